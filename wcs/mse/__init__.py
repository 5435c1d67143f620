"""The SDK's MSE player: H.264 and AAC as stored, framed for its WebSocket."""

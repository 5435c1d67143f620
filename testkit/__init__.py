"""The shared test kit: the real server as a child process, raw and aiortc
clients, moto's S3 on loopback, the SDK's pages in Chromium. Tests and
benchmarks both import it; it imports nothing from ``tests``."""

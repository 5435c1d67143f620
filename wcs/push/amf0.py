"""AMF0, as much as RTMP's commands need: numbers, booleans, strings,
objects, ECMA arrays, null and undefined (Adobe's AMF0 specification)."""

from __future__ import annotations

import struct
from typing import Any

NUMBER, BOOLEAN, STRING, OBJECT, NULL, UNDEFINED, ECMA_ARRAY, OBJECT_END = 0, 1, 2, 3, 5, 6, 8, 9
STRICT_ARRAY, LONG_STRING = 10, 12


class AmfError(ValueError):
    """Bytes that are not the AMF0 this reader knows."""


def encode(*values: Any) -> bytes:
    return b"".join(_encode(value) for value in values)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _encode(value: Any) -> bytes:
    if value is None:
        return bytes([NULL])
    if isinstance(value, bool):
        return bytes([BOOLEAN, value])
    if isinstance(value, (int, float)):
        return bytes([NUMBER]) + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            return bytes([LONG_STRING]) + struct.pack(">I", len(raw)) + raw
        return bytes([STRING]) + _string(value)
    if isinstance(value, dict):
        return (
            bytes([OBJECT])
            + b"".join(_string(k) + _encode(v) for k, v in value.items())
            + b"\x00\x00"
            + bytes([OBJECT_END])
        )
    raise TypeError(f"AMF0 cannot encode {type(value).__name__}")


def ecma_array(values: dict[str, Any]) -> bytes:
    """An ECMA array (what ``onMetaData`` carries)."""
    return (
        bytes([ECMA_ARRAY])
        + struct.pack(">I", len(values))
        + b"".join(_string(k) + _encode(v) for k, v in values.items())
        + b"\x00\x00"
        + bytes([OBJECT_END])
    )


def decode(data: bytes) -> list[Any]:
    """Every value in ``data``."""
    values, position = [], 0
    while position < len(data):
        value, position = _decode(data, position, 0)
        values.append(value)
    return values


def _decode(data: bytes, position: int, depth: int) -> tuple[Any, int]:
    if depth > 16:
        raise AmfError("AMF0 nested too deep")
    try:
        marker = data[position]
        position += 1
        if marker == NUMBER:
            return struct.unpack_from(">d", data, position)[0], position + 8
        if marker == BOOLEAN:
            return data[position] != 0, position + 1
        if marker == STRING:
            (length,) = struct.unpack_from(">H", data, position)
            end = position + 2 + length
            if end > len(data):
                raise AmfError("AMF0 string runs past the message")
            return data[position + 2 : end].decode("utf-8", "replace"), end
        if marker == LONG_STRING:
            (length,) = struct.unpack_from(">I", data, position)
            end = position + 4 + length
            if end > len(data):
                raise AmfError("AMF0 string runs past the message")
            return data[position + 4 : end].decode("utf-8", "replace"), end
        if marker in (NULL, UNDEFINED):
            return None, position
        if marker in (OBJECT, ECMA_ARRAY):
            if marker == ECMA_ARRAY:
                position += 4
            result: dict[str, Any] = {}
            while True:
                (length,) = struct.unpack_from(">H", data, position)
                key = data[position + 2 : position + 2 + length].decode("utf-8", "replace")
                position += 2 + length
                if length == 0 and data[position] == OBJECT_END:
                    return result, position + 1
                result[key], position = _decode(data, position, depth + 1)
        if marker == STRICT_ARRAY:
            (count,) = struct.unpack_from(">I", data, position)
            position += 4
            items = []
            for _ in range(min(count, 4096)):
                item, position = _decode(data, position, depth + 1)
                items.append(item)
            return items, position
    except (IndexError, struct.error):
        raise AmfError("AMF0 value runs past the message") from None
    raise AmfError(f"AMF0 type {marker} is not supported")

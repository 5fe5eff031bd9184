"""A look at a protobuf message's wire format before it is parsed: what parsing it would allocate.

Protobuf's parser builds an object for every message in the data: two bytes of a file (an empty
``NodeProto``) become about 150 bytes of memory, so a 1 GiB file of empty messages would take some
150 GiB to parse; and a packed list of small varints takes up to 8 times its bytes.
:func:`check_message` walks the wire format (tags and lengths, not values) with the message's
descriptor, and refuses data that holds more than :data:`MAX_FIELDS` fields, nests messages deeper
than :data:`MAX_DEPTH`, would expand packed varints to more than :data:`MAX_EXPANDED_BYTES`, or is
truncated, before anything is allocated.  Real models hold a few fields per node and initializer
(tensor data is one ``bytes`` or packed field), far below the limits.
"""

__all__ = ["MAX_FIELDS", "MAX_DEPTH", "MAX_EXPANDED_BYTES", "check_message"]

#: The most fields (every tag, nested ones included) a model may hold.
MAX_FIELDS = 1_000_000
#: The deepest nesting of messages read (protobuf itself stops at 100).
MAX_DEPTH = 64
#: The most bytes the packed varint lists may expand to (8 bytes per value, at most one value per byte).
MAX_EXPANDED_BYTES = 1 << 32

_MESSAGE = 11  # FieldDescriptor.TYPE_MESSAGE
_VARINT_TYPES = {3, 4, 5, 8, 13, 14, 17, 18}  # int64 uint64 int32 bool uint32 enum sint32 sint64


def _varint(data, pos, end):
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("a varint runs past the end of its message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def check_message(data, descriptor):
    """Raise ValueError unless ``data`` (bytes) is a well-formed ``descriptor`` message within the limits.

    Only the structure is read: field tags, lengths and which fields are messages (walked in turn,
    with an explicit stack: no recursion), never the values.
    """
    stack = [(0, len(data), descriptor, 1)]
    fields = expanded = 0
    while stack:
        pos, end, desc, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"messages nest more than {MAX_DEPTH} deep")
        while pos < end:
            tag = data[pos]
            if tag < 0x80:  # one-byte tags, nearly all of them: no call
                pos += 1
            else:
                tag, pos = _varint(data, pos, end)
            number, wire = tag >> 3, tag & 7
            fields += 1
            if fields > MAX_FIELDS:
                raise ValueError(f"more than {MAX_FIELDS} protobuf fields (parsing them would take gigabytes)")
            if wire == 0:
                _, pos = _varint(data, pos, end)
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            elif wire == 2:
                size = data[pos] if pos < end else 0x80
                if size < 0x80:
                    pos += 1
                else:
                    size, pos = _varint(data, pos, end)
                field = desc.fields_by_number.get(number) if desc is not None else None
                if field is not None and field.type == _MESSAGE:
                    stack.append((pos, pos + size, field.message_type, depth + 1))
                elif field is not None and field.type in _VARINT_TYPES:
                    expanded += 8 * size
                    if expanded > MAX_EXPANDED_BYTES:
                        raise ValueError(f"packed lists that would expand to more than {MAX_EXPANDED_BYTES} bytes")
                pos += size
            else:
                raise ValueError(f"field {number} has wire type {wire}, which ONNX files never use")
            if pos > end:
                raise ValueError(f"field {number} runs past the end of its message")
    return fields

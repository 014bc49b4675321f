"""What a handler receives: one stream entry, decoded, with how often it was delivered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Message:
    """One entry of the stream.

    `fields` are the entry's field/value pairs as text (invalid UTF-8 is replaced);
    `raw` holds the same pairs as bytes, for binary payloads. `deliveries` is 1 the
    first time, and counts every delivery since (retries, and take-overs after a
    consumer died), as the broker's pending list records it.
    """

    id: str
    stream: str
    fields: Mapping[str, str]
    deliveries: int = 1
    raw: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def from_entry(
        cls, stream: str, entry_id: bytes | str, raw: Mapping[bytes, bytes], deliveries: int
    ) -> Message:
        ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        text = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw.items()}
        return cls(ident, stream, text, deliveries, dict(raw))

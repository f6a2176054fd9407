"""JSON in C (orjson) for the write path, writing byte for byte what the reference encoders
write: the stdlib `canonical_json` of domain/envelope.py, and the eventsourcing library's
JSON transcoder for stored events (unit tests compare the bytes).

Why: on the write path each event is encoded three or four times (keyed digest, sealed
fields, stored state, chain hash); with the stdlib encoders that was a fifth of the cost.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

from tutorledger.domain import envelope

# Types the stdlib encoder refuses (datetimes, dataclasses) are not encoded by orjson either:
# they fall back to the reference, which raises as it always did.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no whitespace, UTF-8: the same bytes as `envelope.canonical_json`
    for the plain JSON values envelopes hold (str, int, bool, None, lists, dicts)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | _STRICT)
    except TypeError:  # an integer beyond 64 bits, a non-str key: the reference decides
        return envelope.canonical_json(value)


class OrjsonMapper(Mapper[UUID]):
    """The library's mapper, its JSON written and read by orjson. The stored form is the
    library transcoder's: typed values (an event's `timestamp`, its `originator_topic`'s
    siblings) as `{"_type_", "_data_"}` objects. Every tutorledger event keeps them at the
    top level and its envelope as plain JSON, which is what this mapper relies on; any
    state it cannot write that way goes through the library's own transcoder."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._topics: dict[type, str] = {}
        self._last: tuple[Any, Any] = (None, None)  # the last typed value and its encoding

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        cls = type(domain_event)
        topic = self._topics.get(cls)
        if topic is None:
            if getattr(cls, "class_version", 1) > 1:  # upcasting bookkeeping: the library's way
                return super().to_stored_event(domain_event)
            topic = self._topics[cls] = get_topic(cls)
        types: dict[type, Any] = getattr(self.transcoder, "types", {})
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        for name, value in state.items():
            transcoding = types.get(type(value))
            if transcoding is None:
                continue
            last = self._last  # one read: another thread may replace it
            if value is last[0]:  # a batch's events share one creation time
                state[name] = last[1]
            else:
                typed = {"_type_": transcoding.name, "_data_": transcoding.encode(value)}
                self._last, state[name] = (value, typed), typed
        try:
            data = orjson.dumps(state, option=_STRICT)
        except TypeError:
            return super().to_stored_event(domain_event)
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return StoredEvent(originator_id, originator_version, topic, data)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        data = stored_event.state
        if self.cipher:
            data = self.cipher.decrypt(data)
        if self.compressor:
            data = self.compressor.decompress(data)
        cls = resolve_topic(stored_event.topic)
        if getattr(cls, "class_version", 1) > 1:
            return super().to_domain_event(stored_event)
        state: dict[str, Any] = orjson.loads(data)
        names: dict[str, Any] = getattr(self.transcoder, "names", {})
        typed = 0
        for name, value in state.items():
            if isinstance(value, dict) and value.keys() == {"_type_", "_data_"}:
                transcoding = names.get(value["_type_"])
                if transcoding is None:
                    return super().to_domain_event(stored_event)
                state[name] = transcoding.decode(value["_data_"])
                typed += 1
        if data.count(b'"_type_"') != typed:  # typed values nested deeper: the library's way
            return super().to_domain_event(stored_event)
        originator_id = stored_event.originator_id
        state["originator_id"] = (
            originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
        )
        state["originator_version"] = stored_event.originator_version
        event: DomainEventProtocol[UUID] = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

"""The typed values pickle as the call that makes them (wscap/model/value.py): forked processes
hand link views and light chains back by pickle, and the value read back must be the one sent."""
import dataclasses
import pickle

import pytest

from wscap.model.anomaly import Anomaly, Severity
from wscap.model.chain import (Cause, Change, Evidence, HeaderDiff, HopChain, Link, LinkBy, Proxies,
                               StatusChange, Verdict)
from wscap.model.endpoint import Endpoint
from wscap.model.handshake import Frame, Handshake, Head, Outcome, Tcp, TcpEnd
from wscap.model.limits import Limits
from wscap.model.value import pickled_by_fields


def _leg(id_: int | None = 7) -> Handshake:
    req = Head("HTTP/1.1", (("Host", "b:5000"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")), 4, 1_000, "GET /ws",
               True, "GET", "/ws")
    resp = Head("HTTP/1.1", (("Upgrade", "websocket"),), 6, 2_000, "HTTP/1.1 101", True, status=101, reason="Switching")
    frame = Frame("client", 9, 3_000, True, False, False, False, 1, "text", True, 5, None, None, "hello")
    return Handshake(id_, 0, Endpoint("10.0.0.2", 40000), Endpoint("10.0.0.3", 5000), 1, 12, 500, 9_000, True, req, resp,
                     Outcome.UPGRADED, 101, (Anomaly("x-code", Severity.WARN, "odd", 6, "server", "response"),),
                     (frame,), Tcp(1, 2, TcpEnd("fin", "client", 12, 9_000), 0, 10, 20), None, "1.1",
                     parsers={"llhttp": {}}, tls=None)


def _values() -> list:
    diff = HeaderDiff(0, "request", 1, 2, StatusChange("101", "400"),
                      (Change("removed", "Upgrade", "websocket", None, "breaking", "hop-by-hop"),))
    verdict = Verdict(Cause.OK, None, "fine", (Evidence(7, 0, 9, "the 101"),), False, True, ("node",), "none",
                      dns={"host": "backend"})
    return [_leg(), _leg(None), Endpoint("::1", 80), Tcp(None, None, None, 1, 2, 3), TcpEnd("rst", "server", None, 5),
            Anomaly("a", Severity.ERROR, "m"), Proxies(frozenset({"10.0.0.2"}), frozenset()),
            Link(1, 2, LinkBy.KEY, 300), diff, verdict, HopChain(3, (1, 2), (Link(1, 2, LinkBy.KEY, 300),), (diff,), verdict),
            Limits()]


@pytest.mark.parametrize("v", _values(), ids=lambda v: type(v).__name__)
def test_a_value_reads_back_equal_and_by_its_constructor(v):
    back = pickle.loads(pickle.dumps(v, pickle.HIGHEST_PROTOCOL))
    assert back == v and type(back) is type(v)
    cls, args = v.__reduce__()
    assert cls is type(v)
    assert args == tuple(getattr(v, f.name) for f in dataclasses.fields(v))


def test_every_frozen_value_of_the_model_is_pickled_by_its_fields():
    import wscap.model.anomaly, wscap.model.chain, wscap.model.endpoint, wscap.model.handshake, wscap.model.limits
    for mod in (wscap.model.anomaly, wscap.model.chain, wscap.model.endpoint, wscap.model.handshake, wscap.model.limits):
        for obj in vars(mod).values():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == mod.__name__:
                assert "__reduce__" in vars(obj), obj.__name__


def test_with_id_is_replace():
    leg = _leg()
    assert leg.with_id(42) == dataclasses.replace(leg, id=42)
    assert leg.with_id(None) == dataclasses.replace(leg, id=None)


def test_a_class_whose_fields_are_not_its_arguments_is_refused():
    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError):
        pickled_by_fields(Derived)

    @dataclasses.dataclass(frozen=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError):
        pickled_by_fields(Checked)


def test_a_subclass_keeps_its_own_fields():
    @pickled_by_fields
    @dataclasses.dataclass(frozen=True)
    class Base:
        a: int

    @dataclasses.dataclass(frozen=True)
    class More(Base):
        b: int = 0

    globals()["Base"], globals()["More"] = Base, More          # picklable by name
    Base.__qualname__, More.__qualname__ = "Base", "More"
    back = pickle.loads(pickle.dumps(More(1, 2)))
    assert back == More(1, 2) and type(back) is More


@pytest.mark.parametrize("v", _values(), ids=lambda v: type(v).__name__)
def test_the_compiled_constructor_makes_the_same_value(v):
    """wire/_fastpath.c make(cls, *fields), which the codec uses to decode legs: the value cls(*fields)
    makes, of that class; a wrong number of fields goes to the class, which says so."""
    from wscap.wire.pcapio import _fastpath
    if _fastpath is None:
        pytest.skip("the compiled fast path is not built (or WSCAP_PURE is set)")
    fields = tuple(getattr(v, f.name) for f in dataclasses.fields(v))
    made = _fastpath.make(type(v), *fields)
    assert made == v and type(made) is type(v)
    try:
        want = hash(v)
    except TypeError:             # a value holding a dict (Verdict.dns): unhashable either way
        want = None
    if want is not None:
        assert hash(made) == want
    with pytest.raises(TypeError):
        _fastpath.make(type(v), *fields, "one too many")


def test_the_compiled_constructor_calls_a_class_it_cannot_fill():
    from wscap.wire.pcapio import _fastpath
    if _fastpath is None:
        pytest.skip("the compiled fast path is not built (or WSCAP_PURE is set)")
    seen = []

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            seen.append(self.a)

    assert _fastpath.make(Checked, 5) == Checked(5) and seen == [5, 5]     # __post_init__ ran both times
    assert _fastpath.make(Anomaly, "c", Severity.INFO, "m") == Anomaly("c", Severity.INFO, "m")   # defaults: a call

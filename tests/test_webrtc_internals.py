"""Our contract with aiortc's insides: every private attribute wcs/webrtc/internals.py
names exists on the real objects of the installed aiortc, aioice and pylibsrtp.

A release that renames one fails here, naming it, rather than in a viewer's
connection; bench/next_aiortc.py runs this module against the next release.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection
from pylibsrtp import Policy, Session

from wcs.webrtc import internals
from wcs.webrtc.sender import FastSender

ROOT = Path(__file__).resolve().parent.parent


def owner(dotted: str) -> object:
    """A module, or a class in one, by its dotted name."""
    try:
        return importlib.import_module(dotted)
    except ImportError:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)


def instances() -> dict[str, object]:
    """Real objects of each owning class, as aiortc makes them for a viewer."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        pc = RTCPeerConnection()
        transceiver = pc.addTransceiver("video", direction="sendonly")
        dtls = transceiver.sender.transport
        made = {
            "aiortc.rtcrtpsender.RTCRtpSender": transceiver.sender,
            "aiortc.rtcrtpreceiver.RTCRtpReceiver": transceiver.receiver,
            "aiortc.rtcdtlstransport.RTCDtlsTransport": dtls,
            "aiortc.rtcicetransport.RTCIceTransport": dtls.transport,
            "aiortc.rtcpeerconnection.RTCPeerConnection": pc,
            "aioice.ice.Connection": internals.ice_connection(dtls),
            "pylibsrtp.Session": Session(Policy(key=bytes(30),
                                                ssrc_type=Policy.SSRC_ANY_OUTBOUND)),
        }
        loop.run_until_complete(pc.close())
        return made
    finally:
        loop.close()
        asyncio.set_event_loop(None)


OBJECTS = instances()


@pytest.mark.parametrize("owner_name, attribute", internals.CONTRACT,
                         ids=[f"{o.rsplit('.', 1)[-1]}.{a}" for o, a in internals.CONTRACT])
def test_every_private_attribute_we_use_is_there(owner_name, attribute):
    thing = OBJECTS.get(owner_name, owner(owner_name))
    assert hasattr(thing, attribute) or hasattr(owner(owner_name), attribute), (
        f"{owner_name} has no {attribute} any more: wcs/webrtc/internals.py must change")


def test_the_contract_names_no_owner_twice_for_one_attribute():
    assert len(set(internals.CONTRACT)) == len(internals.CONTRACT)


def test_fast_sender_state_clashes_with_nothing_of_aiortc():
    """FastSender lives in aiortc's sender object: its own attributes must not
    overwrite one of aiortc's (which aiortc's code would then misread)."""
    source = (ROOT / "wcs/webrtc/sender.py").read_text()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FastSender")
    own = {t.attr for n in ast.walk(cls) if isinstance(n, ast.Assign)
           for t in n.targets if isinstance(t, ast.Attribute)
           and isinstance(t.value, ast.Name) and t.value.id == "self"}
    aiortc_sender = OBJECTS["aiortc.rtcrtpsender.RTCRtpSender"]
    assert own and not own & set(vars(aiortc_sender)), own & set(vars(aiortc_sender))
    assert issubclass(FastSender, type(aiortc_sender))


def test_no_module_but_internals_reaches_a_private_aiortc_name():
    """The names in the contract appear in internals.py alone (an override's
    name, installed through internals' constant, included)."""
    private = {a for _, a in internals.CONTRACT}
    offenders = []
    for path in sorted((ROOT / "wcs").rglob("*.py")):
        if path.name == "internals.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.FunctionDef) and node.name in private:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} def {node.name}")
            if isinstance(node, ast.ImportFrom) and any(
                    part.startswith("_") for part in (node.module or "").split(".")[1:]
            ) and (node.module or "").split(".")[0] in ("aiortc", "aioice", "pylibsrtp"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module}")
    assert offenders == []


def test_the_overrides_are_installed_under_aiortc_s_names():
    from wcs.webrtc.peer import Peer

    assert getattr(FastSender, internals.SENDER_RTCP_HANDLER) is FastSender.handle_rtcp
    assert getattr(Peer, internals.PEER_CONNECT) is Peer.connect_task


# what a viewer's peer is made without


def new_peer() -> RTCPeerConnection:
    asyncio.set_event_loop(asyncio.new_event_loop())
    return RTCPeerConnection()


def estimator(receiver: object) -> object:
    return getattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator")


def test_send_only_receivers_are_made_without_a_bandwidth_estimator():
    pc = new_peer()
    with internals.without_bitrate_estimator():
        inside = pc.addTransceiver("video", direction="sendonly")
    outside = pc.addTransceiver("video", direction="sendonly")  # a publisher's keeps its own
    assert estimator(inside.receiver) is None and estimator(outside.receiver) is not None
    with pytest.raises(RuntimeError), internals.without_bitrate_estimator():
        raise RuntimeError("a failure inside puts aiortc's back all the same")
    assert estimator(pc.addTransceiver("video").receiver) is not None


def fingerprint(pc: RTCPeerConnection) -> str:
    certificates = getattr(pc, "_RTCPeerConnection__certificates")
    return certificates[0].getFingerprints()[0].value


def test_peers_made_with_one_certificate_share_the_process_s_and_others_make_their_own():
    with internals.one_certificate():
        first = new_peer()
    with internals.one_certificate():
        second = new_peer()
    own = new_peer()
    assert fingerprint(first) == fingerprint(second) != fingerprint(own)
    assert fingerprint(first) == internals.process_certificate().getFingerprints()[0].value


def test_the_process_certificate_is_made_again_after_a_day(monkeypatch):
    made = internals.process_certificate()
    assert internals.process_certificate() is made
    monkeypatch.setattr(internals, "CERTIFICATE_LIFE", -1.0)
    assert internals.process_certificate() is not made

"""The daemon-worker channel: framed pickled messages; whatever cannot be read ends it."""

from __future__ import annotations

import socket

from hub.webhooks.channel import FRAME, Channel, Reloaded, Wake


async def test_messages_arrive_in_order_and_a_closed_peer_reads_as_the_end():
    left, right = socket.socketpair()
    sender, receiver = await Channel.open(left), await Channel.open(right)
    sender.send(Wake())
    sender.send(Reloaded(7))
    await sender.flush()
    assert await receiver.receive() == Wake()
    assert await receiver.receive() == Reloaded(7)
    sender.close()
    assert await receiver.receive() is None
    receiver.close()


async def test_a_message_this_side_cannot_rebuild_ends_the_channel_without_raising():
    left, right = socket.socketpair()
    receiver = await Channel.open(right)
    unknown = b"cbuiltins\nNoSuchThing\n."  # a pickle naming something that does not exist
    left.sendall(FRAME.pack(len(unknown)) + unknown)
    assert await receiver.receive() is None
    left.close()
    receiver.close()

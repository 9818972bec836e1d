"""Acknowledging in batches without ever acknowledging a delivery that is not finished.

``basic.ack(multiple=True)`` up to tag N settles every outstanding delivery up to N on its
channel, in one frame instead of one per message. Deliveries finish out of order (up to the
prefetch count run at once), so a multiple ack is only sent up to the *frontier*: the highest tag
below which every delivery is settled here. Settled tags above a gap (a slow handler) are acked
one by one once enough of them wait, so one slow message never holds the others' prefetch slots.
A multiple ack names the highest tag that still owes its ack, never one acked singly or nacked
already: the broker answers that with PRECONDITION_FAILED (unknown delivery tag) and closes the
channel, which sends every unacked delivery on it round again.

Tags are per channel: a window belongs to one channel and is thrown away with it. After a
``basic.cancel`` a delivery racing the cancel can be dropped by the client, leaving a gap that
would never close, so :meth:`AckWindow.stop_batching` makes every later ack a single one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AckWindow:
    """Pure bookkeeping: which acks to send now. The worker sends them on the right channel."""

    #: Acks that may wait to go out together while the consumer is busy.
    batch: int = 16
    batching: bool = True
    _frontier: int = 0
    _acked_to: int = 0
    #: The highest tag up to the frontier whose ack is owed: what the next multiple ack names.
    _owed_to: int = 0
    #: Settled tags above the frontier: True while the ack is still owed.
    _above: dict[int, bool] = field(default_factory=dict)
    #: Once batching stopped: tags whose single ack is owed.
    _singles: list[int] = field(default_factory=list)

    def settle(self, tag: int, *, owes_ack: bool) -> None:
        """Delivery ``tag`` is finished; ``owes_ack`` is False when it was nacked already."""
        if not self.batching:
            if owes_ack:
                self._singles.append(tag)
            return
        self._above[tag] = owes_ack
        while (self._frontier + 1) in self._above:
            self._frontier += 1
            if self._above.pop(self._frontier):
                self._owed_to = self._frontier

    def due(self, *, idle: bool) -> tuple[int | None, list[int]]:
        """What to send now: a tag for one multiple ack (or None), and tags to ack singly.

        ``idle``: nothing else is being handled, so everything owed goes out.
        """
        if not self.batching:
            owed_singly, self._singles = self._singles, []
            return None, owed_singly
        multiple: int | None = None
        waiting = self._owed_to - self._acked_to
        if waiting > 0 and (idle or waiting >= self.batch):
            multiple = self._acked_to = self._owed_to
        if not self._above:  # in-order settles: nothing above the frontier (the common case)
            return multiple, []
        owed = [tag for tag, owes in self._above.items() if owes]
        singles: list[int] = []
        if owed and (idle or len(owed) >= self.batch):
            singles = sorted(owed)
            for tag in singles:
                self._above[tag] = False
        return multiple, singles

    def stop_batching(self) -> tuple[int | None, list[int]]:
        """Every later ack is a single one (see the module docstring); returns what is owed."""
        owed = self.due(idle=True)
        self.batching = False
        self._above.clear()
        return owed

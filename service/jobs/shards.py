"""A dataset job as shards: any replica runs a slice of its pictures, one merges the slices.

A route that runs a job over a dataset's pictures builds a `ShardedWork` rather than one
`Work`: the pictures in order, `prelude` (what every shard must agree on before any starts,
such as histogram edges), `run` (one slice of the pictures to a `Partial`) and `merge` (the
partials, in slice order, to the answer). Without Redis, or for a single slice, `whole()`
runs it in this process as one job: the prelude, one slice of every picture, the merge.
With Redis, the replica that takes the job from the queue runs the prelude and queues one
shard per `SHARD_IMAGES` pictures; whichever replica stores the last partial merges them
(`job_queue`, `shard_records`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.engine.partials import Partial, pack, unpack
from service.engine.progress import Progress
from service.jobs.job_records import Encoded, Work

Slice = Callable[[Sequence[int], Partial, Progress], Partial]
"""(the slice's picture indices, the prelude, progress over the slice's pictures) -> partial."""

Merge = Callable[[list[Partial], Partial], Encoded]
"""(every slice's partial in slice order, the prelude) -> the job's answer."""


def _no_prelude(_progress: Progress) -> Partial:
    return {}


@dataclass(frozen=True)
class ShardedWork:
    indices: tuple[int, ...]
    run: Slice
    merge: Merge
    prelude: Callable[[Progress], Partial] = _no_prelude

    def slices(self, size: int) -> list[tuple[int, ...]]:
        """The pictures in consecutive slices of at most `size`."""
        return [self.indices[i : i + size] for i in range(0, len(self.indices), size)] or [()]

    def whole(self) -> Work:
        """The job in one process: progress counts the pictures, as the shards' does."""

        def work(progress: Progress) -> Encoded:
            prelude = self.prelude(progress)
            return self.merge([self.run(self.indices, prelude, progress)], prelude)

        return work

    def in_slices(self, size: int) -> Work:
        """The job run slice by slice in this process, each partial packed and unpacked as
        between replicas: what the shards do, without Redis (tests compare it to `whole`)."""

        def work(progress: Progress) -> Encoded:
            prelude = unpack(pack(self.prelude(progress)))
            done, partials = 0, []
            for part in self.slices(size):

                def step(count: int, _total: int, base: int = done) -> None:
                    progress(base + count, len(self.indices))

                partials.append(unpack(pack(self.run(part, prelude, step))))
                done += len(part)
            return self.merge(partials, prelude)

        return work

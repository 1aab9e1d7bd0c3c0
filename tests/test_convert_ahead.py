"""convert's frame loop keeps the pool and the network busy at once (issue 31), same faces as before."""
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from convert.runner import faces_ahead, faces_of_chunk
from pipeline.core.profile import StepTimes


class _Work:
    def __init__(self, log: list) -> None:
        self.log = log

    def prepare(self, frame, plan):
        self.log.append(("crop", plan))
        crop = frame * 10 + plan
        return SimpleNamespace(crop=crop, net_input=crop)      # what the network gets (no lift here)


def _network(crops, masks=False):
    return [c + 1 for c in crops], [None] * len(crops)


def test_the_next_chunks_crops_are_queued_before_this_chunks_blends():
    log: list = []
    pool = ThreadPoolExecutor(1)          # one thread: the jobs run in the order they were queued
    chunks = [[(0, 0), (1, 1)], [(2, 2), (3, 3)], [(4, 4)]]
    plans = {0: [0], 1: [0, 1], 3: [0], 4: [0]}      # frame 2 has no face
    got = []
    try:
        for chunk, per_frame in faces_ahead(iter(chunks), plans, pool, _Work(log), _network, False, StepTimes()):
            got.append((chunk, dict(per_frame)))
            for i, _ in chunk:
                pool.submit(log.append, ("blend", i))
    finally:
        pool.shutdown(wait=True)
    # the crops of chunk k+1 ran before the blends of chunk k, so the network's next batch need not wait for them
    assert log.index(("crop", 0)) < log.index(("blend", 0))
    assert max(n for n, e in enumerate(log) if e[0] == "crop" and n < log.index(("blend", 0))) > 2
    assert log.index(("blend", 1)) < log.index(("blend", 2))
    # and the faces are those faces_of_chunk makes, chunk by chunk
    with ThreadPoolExecutor(1) as plain:
        for (chunk, per_frame), want_chunk in zip(got, chunks):
            want = faces_of_chunk(want_chunk, plans, plain, _Work([]), _network, False, StepTimes())
            assert chunk == want_chunk
            assert {i: [(p.crop, g, m) for p, g, m in v] for i, v in per_frame.items()} == \
                {i: [(p.crop, g, m) for p, g, m in v] for i, v in want.items()}
    assert len(got) == 3 and 2 not in got[1][1]


class _LoadingNetwork:
    """A network that is not ready for its first ``loading`` polls (a model still loading in its process)."""

    def __init__(self, loading: int, log: list) -> None:
        self.polls, self.loading, self.log = 0, loading, log

    def ready(self) -> bool:
        self.polls += 1
        return self.polls > self.loading

    def __call__(self, crops, masks=False):
        self.log.append(("network", len(crops)))
        return _network(crops, masks)


def test_crops_are_made_ahead_while_the_network_loads_and_the_faces_are_the_same():
    """Not ready: chunks are started (decoded, their crops queued) up to ``ahead`` before the first network
    call; ready at once: one, as before. Either way each chunk gets the faces faces_of_chunk makes."""
    chunks = [[(i, i)] for i in range(10)]
    plans = {i: [0] for i in range(10)}
    for loading, ahead, started_before_call in ((100, 4, 4), (2, 6, 3), (0, 6, 1)):
        log: list = []

        def decoded(log: list = log):
            for c in chunks:
                log.append(("decoded", c[0][0]))
                yield c
        with ThreadPoolExecutor(1) as pool:
            got = [(c, dict(f)) for c, f in faces_ahead(decoded(), plans, pool, _Work([]),
                                                        _LoadingNetwork(loading, log), False, StepTimes(), ahead)]
        first_call = log.index(("network", 1))
        assert sum(1 for e in log[:first_call] if e[0] == "decoded") == started_before_call, (loading, log)
        assert [c for c, _ in got] == chunks
        assert all(per_frame[i][0][1] == i * 10 + 1 for (c, per_frame), i in zip(got, range(10)))
    # the memory bound: a 512 px clip gets about 20 chunks of 8, a 4K one a single chunk
    from convert.runner import chunks_ahead
    assert 15 <= chunks_ahead(512, 512, 256, 128, 8) <= 30
    assert chunks_ahead(3840, 2160, 256, 128, 8) == 1

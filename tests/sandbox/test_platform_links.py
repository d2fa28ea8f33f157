"""Network faults honour Chaos Mesh's direction and target: which pod-to-pod paths they impair."""

from __future__ import annotations

import pytest

from sandbox.platform.effects import NetworkFault, PodRef
from sandbox.platform.faults import FaultBook

A = PodRef("booking", "web-frontend-aaaaa")
B = PodRef("booking", "booking-api-bbbbb")
C = PodRef("booking", "cache-ccccc")
OUTSIDE = None


@pytest.mark.parametrize(
    ("fault", "impaired", "clean"),
    [
        pytest.param(NetworkFault(pods=(A,), peers=(B,), direction="to", delay_ms=100),
                     [(A, B)], [(B, A), (A, C), (C, B)], id="to-target"),
        pytest.param(NetworkFault(pods=(A,), peers=(B,), direction="from", delay_ms=100),
                     [(B, A)], [(A, B), (C, A)], id="from-target"),
        pytest.param(NetworkFault(pods=(A,), peers=(B,), direction="both", delay_ms=100),
                     [(A, B), (B, A)], [(A, C), (C, A)], id="both-target"),
        pytest.param(NetworkFault(pods=(A,), direction="to", delay_ms=100),
                     [(A, B), (A, C), (A, OUTSIDE)], [(B, A), (OUTSIDE, A)], id="to-everyone"),
        pytest.param(NetworkFault(pods=(A,), direction="from", delay_ms=100),
                     [(B, A), (OUTSIDE, A)], [(A, B), (A, OUTSIDE)], id="from-everyone"),
    ],
)
def test_direction_and_target_decide_the_impaired_paths(fault, impaired, clean):
    book = FaultBook()
    book.add("f", fault)
    for sender, receiver in impaired:
        assert book.link(sender, receiver).delay_s == pytest.approx(0.1)
    for sender, receiver in clean:
        assert book.link(sender, receiver) is None


def test_faults_on_one_path_combine():
    book = FaultBook()
    book.add("delay", NetworkFault(pods=(A,), delay_ms=100, jitter_ms=30))
    book.add("loss", NetworkFault(pods=(A,), peers=(B,), delay_ms=50, jitter_ms=40, loss_pct=50, corrupt_pct=50))
    link = book.link(A, B)
    assert link.delay_s == pytest.approx(0.15)
    assert link.jitter_s == pytest.approx(0.05)
    # A corrupted segment is dropped by its checksum: loss and corruption compound.
    assert link.loss == pytest.approx(0.75)
    assert book.link(A, C).loss == 0


def test_removing_a_fault_cleans_the_path():
    book = FaultBook()
    book.add("p", NetworkFault(pods=(A,), peers=(B,), direction="both", partition=True))
    assert book.link(B, A).partition
    book.remove("p")
    assert book.link(A, B) is None and book.link(B, A) is None

"""Micro-benchmarks of code generation: IR to MP-SPDZ source, and party 0's input file."""

from __future__ import annotations

import pytest

from backends.mp_spdz import program
from circuits.population import Padding
from circuits.queryfile import load_query
from conftest import REPO
from harness.data.synthetic import generate

QUERY, _ = load_query(REPO / "configs" / "queries" / "five-criteria.yaml")


@pytest.mark.benchmark(group="codegen")
@pytest.mark.parametrize("lowering", program.LOWERINGS)
def test_bench_translate(benchmark, lowering):
    pop = generate(1000, 7, Padding(8, 16), truncate=True)
    source = benchmark(program.translate, QUERY, program.Shape.of(pop), lowering)
    assert "def " in source or "sint" in source


@pytest.mark.benchmark(group="codegen")
def test_bench_input_file(benchmark):
    pop = generate(10_000, 7, Padding(8, 16), truncate=True)
    shape = program.Shape.of(pop)
    text = benchmark(program.input_text, pop, QUERY, shape)
    assert text

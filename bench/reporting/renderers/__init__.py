"""How the report shows each harness's results: one module per harness (or study), each with
``render(results) -> Rendering`` (``metagrad.bench.harnesses.registry``), reading result files and computing
nothing."""

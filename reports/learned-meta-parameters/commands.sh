# Learned meta-parameters against the fixed ones they extend, at equal time (reports/notes/meta-parameters.md), on
# Omniglot 5-way 1-shot: MAML, Meta-SGD and MAML++'s LSLR; iMAML-GD (lambda = 2) and iMAML with a learned lambda,
# one value, one per layer, one per parameter. The same seed (0) and so the same initial network and training tasks,
# 10 minutes of training each (validation not counted), one thread, all on the per-task engine, two runs at a time on
# the 2-core AMD EPYC, on 2026-12-07, from the repository root (the re-run's commands, bench/cli/rerun.py); then 600
# fixed test tasks each.
for variant in maml meta-sgd maml-lslr imaml-gd imaml-lambda-scalar imaml-lambda-layer imaml-lambda-parameter; do
  echo "metagrad train --preset omniglot-5w1s-$variant --out reports/learned-meta-parameters/omniglot-5w1s-$variant --max-minutes 10 --validate-every 50 --threads 1 --engine per-task --data-root ../shared/data --no-progress && metagrad eval reports/learned-meta-parameters/omniglot-5w1s-$variant --threads 1 --no-progress"
done | xargs -P 2 -I{} sh -c {}
# MAML's run was made again beside the last one (imaml-lambda-parameter), the first pair having shared the machine with
# a 90-s test run for part of its 10 minutes (336 iterations then, 352 now; the same validation accuracies where both
# reached); the committed folder is the second:
metagrad train --preset omniglot-5w1s-maml --out reports/learned-meta-parameters/omniglot-5w1s-maml --max-minutes 10 --validate-every 50 --threads 1 --engine per-task --data-root ../shared/data --no-progress && metagrad eval reports/learned-meta-parameters/omniglot-5w1s-maml --threads 1 --no-progress
# A second seed for the comparison the first one made most of (iMAML-GD at lambda = 2 against one learned lambda):
# seed 1 (another initial network and other training tasks, the same classes), otherwise as above, the two runs side by
# side on the same AMD EPYC on 2026-12-07:
for variant in imaml-gd imaml-lambda-scalar; do
  echo "metagrad train --preset omniglot-5w1s-$variant --seed 1 --out reports/learned-meta-parameters/omniglot-5w1s-$variant-seed1 --max-minutes 10 --validate-every 50 --threads 1 --engine per-task --data-root ../shared/data --no-progress && metagrad eval reports/learned-meta-parameters/omniglot-5w1s-$variant-seed1 --threads 1 --no-progress"
done | xargs -P 2 -I{} sh -c {}

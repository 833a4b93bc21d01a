"""Write this folder's results.csv (compare's format) from the SAC runs of the DMC benchmark
(docs/benchmarks/dmc/results.csv), so ``worldmodels compare --report docs/comparisons/dmc_sac``
can aggregate one method over three tasks. Run from the repository root."""
import csv
from pathlib import Path

here = Path(__file__).resolve().parent
with open(here.parents[1] / "benchmarks" / "dmc" / "results.csv", newline="") as source, \
        open(here / "results.csv", "w", newline="") as target:
    writer = csv.writer(target)
    writer.writerow(["config", "seed", "env_step", "wall_time", "eval_return_mean", "eval_return_std", "env_id",
                     "method", "variant", "parameters"])
    for row in csv.DictReader(source):
        if row["method"] != "sac":
            continue
        domain, task = row["task"].split("_", 1)
        config = f"dmc_{row['task']}_sac"
        writer.writerow([config, row["seed"], row["env_step"], row["wall_time"], row["eval_return_mean"], "nan",
                         f"dm_control/{domain}-{task}-v0", "sac", config, ""])

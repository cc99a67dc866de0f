"""kiln sweep (issue #16): bad specs are refused before anything is built; a sweep of two variants and two seeds
trains unattended, survives being killed and started again (finished runs are kept, the interrupted one
resumes), and its table, CSV and JSON hold the runs' own logged numbers and `kiln stats`'s FLOPs; the
pictures are well-formed SVG with a line per variant, and valid PNG of the same size with those lines' colours."""
import csv
import json
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from kilntest import ROOT, read_png, run

MODEL = ROOT / "examples/char-gpt-small.kiln"
DATA = ROOT / "examples/data/tinyshakespeare.txt"


def spec_text(steps=120, extra=""):
    return f"""# two variants, two seeds
data  = {DATA}
steps = {steps}
seeds = 1 2
eval_interval = 40
early = 40
lengths = 32 64 128
train = --batch 8 --seq 32 --decay-steps {steps} --warmup 10
variant learned = {MODEL} --set layers=2
variant alibi   = {MODEL} --set layers=2 --replace " + positions(learned, T, dim)" "" --replace "mask: causal)" "mask: causal, position: alibi)"
{extra}"""


@pytest.mark.parametrize("change,message", [
    (lambda s: s.replace("steps = 120", "steps = 0"), r"mini\.sweep:3: the budget steps must be a positive integer, got '0'"),
    (lambda s: s.replace(str(DATA), "/nonexistent/data.txt"), r"mini\.sweep:2: no data file /nonexistent/data\.txt"),
    (lambda s: s + "variant gone = missing.kiln\n", r"mini\.sweep:11: variant 'gone': no model file .*missing\.kiln"),
    (lambda s: s.replace('"mask: causal)"', '"mask: diagonal)"'), r"--replace \"mask: diagonal\)\": no such text in"),
    (lambda s: s + "budget = 5\n", r"mini\.sweep:11: unknown key 'budget'"),
    (lambda s: s + "variant alibi = x.kiln\n", r"mini\.sweep:11: variant 'alibi' is named twice"),
    (lambda s: s.replace("train = ", "train = --seed 3 "), r"train flags may not set --seed"),
    (lambda s: s + "seconds = 0\n", r"mini\.sweep:11: the budget seconds must be a positive integer, got '0'"),
    (lambda s: s.replace("steps = 120\n", ""), r"mini\.sweep: no budget: 'steps = N' or 'seconds = S'"),
])
def test_bad_specs_are_refused_before_anything_trains(kiln, tmp_path, change, message):
    spec = tmp_path / "mini.sweep"
    spec.write_text(change(spec_text()))
    r = run([kiln, "sweep", spec, "-o", tmp_path / "out"])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and re.search(message, r.stderr), r.stderr
    assert not (tmp_path / "out").exists()


def read_log(path):
    train, val = {}, {}
    for line in path.read_text().splitlines():
        o = json.loads(line)
        if "val_loss" in o:
            val[o["step"]] = o["val_loss"]
        else:
            train[o["step"]] = o["loss"]
    return train, val


def test_sweep_survives_a_kill_and_reports_its_runs_numbers(kiln, tmp_path):
    spec = tmp_path / "mini.sweep"
    spec.write_text(spec_text())
    out = tmp_path / "out"
    # first try: killed once the second run has a checkpoint
    p = subprocess.Popen([str(kiln), "sweep", str(spec), "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    first, second = out / "runs/learned/seed-1", out / "runs/learned/seed-2"
    deadline = time.time() + 300
    while not (second / "ckpt.safetensors").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert (first / "result.json").exists() and not (second / "result.json").exists()
    kept = (first / "train.log").read_text()
    # again: the finished run is kept, the interrupted one resumes from its checkpoint, the rest run
    r = run([kiln, "sweep", spec, "-o", out])
    assert r.returncode == 0, r.stderr
    assert (first / "train.log").read_text() == kept
    assert "train: resumed from" in (second / "train.log").read_text()

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["variant"], r["seed"]) for r in rows] == [("learned", "1"), ("learned", "2"), ("alibi", "1"), ("alibi", "2")]
    stats = run([kiln, "stats", MODEL, "--set", "layers=2", "--batch", 8, "--seq", 32]).stdout
    train_flops = int(re.findall(r"total\s+([\d,]+) FLOPs", stats)[1].replace(",", ""))
    for row in rows:
        train, val = read_log(out / f"runs/{row['variant']}/seed-{row['seed']}/log.jsonl")
        assert sorted(train) == list(range(1, 121)) and sorted(val) == [40, 80, 120]
        assert float(row["val_loss"]) == val[120] and float(row["early_loss"]) == train[40]
        assert float(row["steps_per_s"]) > 0
        if row["variant"] == "learned":
            assert int(row["train_flops_per_step"]) == train_flops
            assert row["loss_at_128"] == "" and float(row["loss_at_64"]) > 0
        else:
            assert all(float(row[f"loss_at_{n}"]) > 0 for n in (32, 64, 128))
    table = (out / "results.md").read_text()
    learned = [float(r["val_loss"]) for r in rows if r["variant"] == "learned"]
    assert f"| {sum(learned) / 2:.3f} ± " in table
    assert "dim T = 128 exceeds its bound 64" in table
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["runs"]) == 4 and doc["variants"][0]["trainFlopsPerStep"] == train_flops

    for picture, lines in [("loss", 4), ("length", 2)]:
        root = ET.parse(out / f"{picture}.svg").getroot()
        width = int(root.get("width"))
        assert root.tag.endswith("svg") and width >= 760 and root.get("height") == "460"
        ns = "{http://www.w3.org/2000/svg}"
        assert len(root.findall(f"{ns}polyline")) == lines
        legend = [t.text for t in root.findall(f"{ns}text")]
        assert any(t and t.startswith("alibi") for t in legend) and any(t and t.startswith("learned") for t in legend)
        # the PNG: valid chunks (CRC), the SVG's size, 8-bit RGB, and a picture (not one colour; the series' colours)
        w, h, rows = read_png(out / f"{picture}.png")
        assert (w, h) == (width, 460)
        pixels = {rows[r][3 * x:3 * x + 3] for r in range(0, h, 3) for x in range(0, w, 2)}
        assert len(pixels) > 4 and bytes.fromhex("0072B2") in pixels and bytes.fromhex("D55E00") in pixels


def test_a_finished_sweep_started_again_trains_nothing(kiln, tmp_path):
    spec = tmp_path / "mini.sweep"
    spec.write_text(spec_text(steps=20).replace("eval_interval = 40", "eval_interval = 10").replace("early = 40", "early = 10"))
    out = tmp_path / "out"
    assert run([kiln, "sweep", spec, "-o", out]).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*")}
    r = run([kiln, "sweep", spec, "-o", out])
    assert r.returncode == 0 and "4 runs" in r.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*")} == before
    # an edited variant is built and trained again; the other keeps its runs
    spec.write_text(spec.read_text().replace("position: alibi)", "position: alibi, kv_heads: 1)"))
    r = run([kiln, "sweep", spec, "-o", out])
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("training it again") == 2 and "alibi seed 1: the spec or the model changed" in r.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if "learned" in str(p))


def test_plan_compiles_every_variant_and_trains_nothing(kiln, tmp_path):
    """--plan: each variant (its edits made, a multi-line one included) compiled, with kiln stats' numbers."""
    spec = tmp_path / "mini.sweep"
    spec.write_text(spec_text() + 'variant act = ' + str(MODEL) + ' --set layers=2 --replace "repeat(layers, Layer, h)" '
                    '"repeat(layers, Layer, h, shared: true, timestep: true, halting: 0.01)" --replace "output logits = " '
                    '"output ponder = ponder_cost(h)\\noutput logits = " --replace "next_token(logits)" "next_token(logits) + 0.01 * ponder"\n')
    r = run([kiln, "sweep", spec, "--plan", "-o", tmp_path / "out"])
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "out").exists()
    stats = run([kiln, "stats", MODEL, "--set", "layers=2", "--batch", 8, "--seq", 32]).stdout
    params = int(re.search(r"parameters\s+([\d,]+)", stats).group(1).replace(",", ""))
    assert f"  learned: {params} parameters" in r.stdout
    assert re.search(r"  act: \d+ parameters", r.stdout) and "3 variants × 2 seeds × 120 steps" in r.stdout


def test_a_time_budget_gives_every_run_the_same_seconds(kiln, tmp_path):
    """seconds = S: each run stops once its training steps took S s (train --time-limit), the table gains the steps
    each reached, and those are the runs' own last logged steps; the checkpoint keeps the time for a resume."""
    spec = tmp_path / "timed.sweep"
    spec.write_text(spec_text().replace("steps = 120", "seconds = 2").replace("seeds = 1 2", "seeds = 1")
                    .replace("lengths = 32 64 128\n", "").replace("early = 40", "early = 1").replace("eval_interval = 40", "eval_interval = 5"))
    out = tmp_path / "out"
    r = run([kiln, "sweep", spec, "-o", out])
    assert r.returncode == 0, r.stderr
    table = (out / "results.md").read_text()
    assert "2 s of training steps per run" in table and "| steps |" in table
    doc = json.loads((out / "results.json").read_text())
    assert doc["seconds"] == 2
    for result in doc["runs"]:
        d = out / "runs" / result["variant"] / "seed-1"
        log = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
        steps = [o for o in log if "val_loss" not in o]
        assert result["steps"] == steps[-1]["step"] >= 1
        # stopped by the clock: the training seconds passed the budget at the last step only
        assert steps[-1]["train_s"] >= 2 and all(o["train_s"] < 2 for o in steps[:-1])
        assert "time limit reached" in (d / "train.log").read_text()
        assert f"| {result['variant']} |" in table
        with open(out / "results.csv") as f:
            rows = {row["variant"]: row for row in csv.DictReader(f)}
        assert int(rows[result["variant"]]["steps"]) == result["steps"]
    # the checkpoint holds the seconds: resumed with the same limit, nothing is left to do
    build = out / "builds" / "learned"
    r = run([build / "train", "--resume", out / "runs/learned/seed-1/ckpt.safetensors", "--data", DATA, "--time-limit", 2,
             "--out", tmp_path / "again.st"])
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stdout + r.stderr
    r = run([build / "train", "--data", DATA, "--time-limit", 0, "--out", tmp_path / "x.st"])
    assert r.returncode == 2 and "--time-limit" in r.stderr and r.stderr.count("\n") == 1

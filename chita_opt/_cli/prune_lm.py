"""``chita-opt prune-lm``: layer-wise pruning of a Hugging Face causal LM checkpoint.

    chita-opt prune-lm MODEL_DIR --calibration TEXT_FILE --sparsity 0.5 --output OUT_DIR
    chita-opt prune-lm MODEL_DIR --calibration TEXT_FILE --pattern 2:4 --output OUT_DIR

MODEL_DIR is a ``save_pretrained`` directory (model + tokenizer); nothing is
downloaded (``local_files_only``). The calibration text is tokenized once; its
last ``--held-out`` share (10% by default) is kept aside and the perplexity on
it is printed before and after pruning, the rest is cut into ``--nsamples``
windows of ``--seqlen`` tokens for calibration. The output directory gets a
checkpoint with the zeros baked into the weights (no mask tensors), loadable
with ``from_pretrained``, and the tokenizer. Needs ``pip install chita_opt[lm]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["add_arguments", "add_parser", "run"]

HELP = "prune a Hugging Face causal-LM checkpoint layer-wise (CHITA) and save it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="save_pretrained directory")
    p.add_argument("--calibration", required=True, metavar="TEXT_FILE",
                   help="UTF-8 text: calibration windows, and its tail for perplexity")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--sparsity", type=float, help="share of weights removed per layer")
    budget.add_argument("--pattern", help="N:M pattern such as 2:4")
    p.add_argument("--output", required=True, metavar="OUT_DIR", help="where to save")
    p.add_argument("--method", default="chita", help="chita (default), iht, backsolve, magnitude")
    p.add_argument("--damping", type=float, default=0.01, help="relative to mean diag(X^T X)")
    p.add_argument("--gradient-block", action="store_true", dest="gradient_block",
                   help="add each layer's gradient block of the next-token loss "
                        "(docs/layerwise.md; d_out x d_in^2 memory per layer: small models)")
    p.add_argument("--gradient-weight", type=float, default=1.0, dest="gradient_weight",
                   help="gradient block weight relative to the trace-matched scale")
    p.add_argument("--nsamples", type=int, default=128, help="calibration windows")
    p.add_argument("--seqlen", type=int, default=None,
                   help="tokens per window (default: min(512, model context))")
    p.add_argument("--held-out", type=float, default=0.1, dest="held_out",
                   help="share of the text kept for perplexity (0 to skip)")
    p.add_argument("--batch-size", type=int, default=8, dest="batch_size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    p.add_argument("--quiet", action="store_true", help="no per-layer progress")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``prune-lm`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser("prune-lm", help=HELP, description=HELP)
    add_arguments(p)
    p.set_defaults(_run=run)
    return p


def _fail(msg: str) -> int:
    print(f"chita-opt prune-lm: error: {msg}", file=sys.stderr)
    return 2


def _perplexity(model, ids, seqlen: int, batch_size: int, device) -> float:
    import torch

    n = (ids.numel() - 1) // seqlen
    if n == 0:
        return float("nan")
    wins = ids[: n * seqlen + 1]
    xs = torch.stack([wins[i * seqlen : (i + 1) * seqlen + 1] for i in range(n)])
    nll, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x = xs[i : i + batch_size].to(device)
            logits = model(input_ids=x[:, :-1]).logits.float()
            nll += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
            ).item()
            count += x[:, 1:].numel()
    return math.exp(nll / count)


def _causal_lm_loss(model, batch):
    # Hugging Face shifts the labels: the next-token loss of the window itself
    return model(**batch, labels=batch["input_ids"]).loss


def run(args: argparse.Namespace) -> int:
    if args.sparsity is not None and not 0.0 <= args.sparsity < 1.0:
        return _fail(f"--sparsity: expected a number in [0, 1), got {args.sparsity}")
    if not args.gradient_weight >= 0.0 or args.gradient_weight == float("inf"):
        return _fail(f"--gradient-weight: expected a finite non-negative number, "
                     f"got {args.gradient_weight}")
    if not 0.0 <= args.held_out < 1.0:
        return _fail(f"--held-out: expected a number in [0, 1), got {args.held_out}")
    for name in ("nsamples", "batch_size"):
        if getattr(args, name) <= 0:
            return _fail(f"--{name.replace('_', '-')}: expected a positive integer, "
                         f"got {getattr(args, name)}")
    model_dir, out_dir, text_file = Path(args.model_dir), Path(args.output), Path(args.calibration)
    if not (model_dir / "config.json").is_file():
        return _fail(f"MODEL_DIR: expected a save_pretrained directory with config.json, "
                     f"got {str(model_dir)!r}")
    if not text_file.is_file():
        return _fail(f"--calibration: expected a text file, got {str(text_file)!r}")
    if out_dir.exists() and any(out_dir.iterdir()) and not args.overwrite:
        return _fail(f"--output: {str(out_dir)!r} exists and is not empty (pass --overwrite)")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        return _fail(f"prune-lm needs torch and transformers ({exc}); "
                     "pip install 'chita_opt[lm]'")
    from ..adapters.torch import prune_layerwise

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    device = torch.device(args.device)
    model.to(device).eval()
    text = text_file.read_text(encoding="utf-8")
    ids = torch.tensor(tok(text)["input_ids"], dtype=torch.long)
    context = getattr(model.config, "max_position_embeddings", None) or 512
    seqlen = args.seqlen or min(512, context)
    if seqlen > context:
        return _fail(f"--seqlen: expected at most the model context {context}, got {seqlen}")
    cut = int(ids.numel() * (1.0 - args.held_out))
    calib_ids, held = ids[:cut], ids[cut:]
    n_win = min(args.nsamples, calib_ids.numel() // seqlen)
    if n_win == 0:
        return _fail(f"--calibration: {calib_ids.numel()} calibration tokens, fewer than one "
                     f"window of --seqlen {seqlen}")
    g = torch.Generator().manual_seed(0)
    starts = torch.randperm(calib_ids.numel() // seqlen, generator=g)[:n_win] * seqlen
    wins = torch.stack([calib_ids[s : s + seqlen] for s in starts])
    batches = [{"input_ids": b} for b in wins.split(args.batch_size)]
    print(f"model {model_dir} ({type(model).__name__}), {ids.numel()} tokens: "
          f"{n_win} calibration windows of {seqlen}, {held.numel()} held out")
    ppl_before = (_perplexity(model, held, seqlen, args.batch_size, device)
                  if args.held_out else None)
    report = prune_layerwise(
        model, batches, sparsity=args.sparsity, pattern=args.pattern, method=args.method,
        damping=args.damping, device=device, progress=not args.quiet,
        gradient_block=_causal_lm_loss if args.gradient_block else None,
        gradient_weight=args.gradient_weight,
    )
    # bake the zeros in: drop torch.nn.utils.prune's weight_orig/weight_mask
    for module in model.modules():
        if hasattr(module, "weight_mask"):
            torch.nn.utils.prune.remove(module, "weight")
    ppl_after = _perplexity(model, held, seqlen, args.batch_size, device) if args.held_out else None
    print(report)
    # write next to the target, then move: a failure never leaves half a checkpoint
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prune-lm-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    kept = sum(r.kept for r in report.layers)
    total = sum(r.shape[0] * r.shape[1] for r in report.layers)
    print(f"pruned {len(report.layers)} layers to {1 - kept / total:.1%} sparsity "
          f"in {time.perf_counter() - t0:.1f} s; saved to {out_dir}")
    if ppl_before is not None:
        print(f"held-out perplexity: before {ppl_before:.4f}, after {ppl_after:.4f}")
    return 0

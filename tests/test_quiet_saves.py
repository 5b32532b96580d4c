"""Saves print nothing that needs no action: no "Removed shared tensor" per checkpoint, no DeepSpeed notice;
what was saved reloads equal, tied weights tied again."""

import subprocess
import sys

import pytest
import torch

from tinydistill.config.schema import StudentConfig
from tinydistill.students.registry import load_student, save_student, saved_student_config
from tinydistill.training.checkpoint import LoopState, load_latest, save_checkpoint
from tinydistill.training.trainer import make_accelerator


def _choice_student(folder):
    cfg = StudentConfig(model=str(folder), architecture="multiple_choice", attn_implementation="eager",
                        rationale_head="decoder")
    return load_student(cfg, with_rationale_head=True)  # the rationale decoder's output layer is tied to its embeddings


def _tied(model) -> list[str]:
    seen: dict[int, str] = {}
    tied = []
    for name, t in model.state_dict().items():
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            tied.append(name)
        seen[ptr] = name
    return tied


def test_checkpoint_of_tied_weights_is_quiet_and_reloads_equal(tmp_path, tiny_bert_dir, caplog):
    student = _choice_student(tiny_bert_dir)
    assert _tied(student.model)  # there is something to warn about
    with torch.no_grad():
        for p in student.model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # not the weights a fresh load gives
    accelerator = make_accelerator("no")
    model = accelerator.prepare(student.model)
    caplog.clear()
    with caplog.at_level("WARNING"):
        save_checkpoint(accelerator, tmp_path / "ckpt", LoopState(step=3), keep=1)
    assert "Removed shared tensor" not in caplog.text and "shared" not in caplog.text.lower(), caplog.text

    fresh = _choice_student(tiny_bert_dir)
    accelerator = make_accelerator("no")
    fresh_model = accelerator.prepare(fresh.model)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert load_latest(accelerator, tmp_path / "ckpt").step == 3
    assert caplog.text == "", caplog.text  # nothing missing or unexpected when it is read back
    saved, loaded = model.state_dict(), fresh_model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert _tied(fresh_model) == _tied(model)  # tied again, not two copies


def test_best_student_save_is_quiet_and_reloads_equal(tmp_path, tiny_bert_dir, capfd):
    student = _choice_student(tiny_bert_dir)
    save_student(student, tmp_path / "best")
    again = load_student(saved_student_config(StudentConfig(model=str(tiny_bert_dir)), tmp_path / "best"))
    a, b = student.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    out = capfd.readouterr()
    assert "Removed shared tensor" not in out.out + out.err


@pytest.mark.slow
@pytest.mark.skipif(torch.backends.cuda.is_built(), reason="with a CUDA torch the notice may point at a real problem")
def test_first_save_in_a_process_prints_no_deepspeed_notice(tmp_path, tiny_bert_dir):
    """`save_pretrained` imports DeepSpeed (when installed), which announces 'Setting accelerator to CPU'."""
    pytest.importorskip("deepspeed")
    script = (
        "import sys\nfrom tinydistill.config.schema import StudentConfig\n"
        "from tinydistill.students.registry import load_student, save_student\n"
        f"s = load_student(StudentConfig(model={str(tiny_bert_dir)!r}, architecture='multiple_choice',"
        " rationale_head='decoder'), with_rationale_head=True)\n"
        f"save_student(s, {str(tmp_path / 'best')!r})\n"
        "print('deepspeed' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "True"  # DeepSpeed was imported: the notice would have shown
    assert "Setting accelerator" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Removed shared tensor" not in proc.stdout + proc.stderr

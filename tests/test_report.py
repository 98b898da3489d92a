"""HTML report and quickstart on a tiny run: the page parses and embeds every figure."""

import base64
import re
from html.parser import HTMLParser

from tangentlens import quickstart as qs
from tangentlens.cli import main


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))


def _check_page(path, analysis_dir):
    text = path.read_text()
    parser = _Collect()
    parser.feed(text)
    assert "table" in parser.tags and parser.imgs
    for img in parser.imgs:  # every embedded figure is a real PNG and exists on disk
        assert img["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert (analysis_dir / img["alt"]).read_bytes() == png
    return text


def test_report_from_cli(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["run", "analyses/configs/teacher_mlp.yaml", "--out", str(run_dir), "model.width=32",
                 "train.steps=20", "train.checkpoints=3", "train.progress=false",
                 "train.regimes=[sgd,linearized]", "probe.n_train=48", "probe.n_test=48"]) == 0
    out = tmp_path / "report" / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    text = _check_page(out, out.parent / "analysis")
    # captions state numbers computed by this run
    assert re.search(r"Final-step relative_change at \S+: sgd \d", text)
    assert "linearized" in text


def test_quickstart_tiny(tmp_path, monkeypatch, capsys):
    tiny = [*qs.QUICKSTART, "model.width=32", "train.lr=0.2", "train.steps=10",
            "train.checkpoints=3", "train.kernel_max_train=64", "probe.n_train=48",
            "probe.n_test=48", "train.progress=false"]
    monkeypatch.setattr(qs, "QUICKSTART", tiny)
    message = qs.quickstart(tmp_path / "qs")
    assert message.endswith(str(tmp_path / "qs" / "report.html"))
    _check_page(tmp_path / "qs" / "report.html", tmp_path / "qs" / "analysis")
    assert "kernel" in capsys.readouterr().out


def test_report_escapes_names_from_configs(tmp_path):
    evil = "<script>alert(1)</script>"
    run_dir = tmp_path / "run"
    assert main(["run", "analyses/configs/teacher_mlp.yaml", "--out", str(run_dir), "model.width=16",
                 "train.steps=4", "train.checkpoints=2", "train.progress=false", f"name='{evil}'",
                 "train.regimes=[sgd,linearized]", "probe.n_train=16", "probe.n_test=16"]) == 0
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(out), "--only", "change"]) == 0
    text = out.read_text()
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    parser = _Collect()
    parser.feed(text)
    assert "script" not in parser.tags

"""YOLOv8 loading: the restricted unpickler refuses foreign globals, safetensors with the same names, scales told
from shapes (full-size n/s/m on the meta device against Ultralytics' key and parameter counts), letterbox maths."""
import io
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from inpaintlab.detect import (DetectorError, YOLOConfig, YOLOv8, config_from_state_dict, letterbox_geometry,
                               load_detector)
from inpaintlab.detect.predict import Letterbox, non_max_suppression, scale_boxes


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def _torch_file(path, obj):
    torch.save(obj, path)
    return path


def test_crafted_file_with_a_reduce_call_is_refused(tmp_path, capsys):
    path = _torch_file(tmp_path / "evil.pt", {"model": _Evil(), "w": torch.ones(2)})
    with pytest.raises(DetectorError, match=r"evil\.pt: refusing to load: .*builtin__\.print") as info:
        load_detector(path)
    assert "\n" not in str(info.value)
    assert "pickled code ran" not in capsys.readouterr().out


def test_file_with_another_class_is_refused(tmp_path):
    path = _torch_file(tmp_path / "other.pt", {"model": torch.nn.Linear(2, 2)})
    with pytest.raises(DetectorError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_detector(path)


def test_ultralytics_named_but_unknown_class_is_refused(tmp_path):
    # a stand-in class name Ultralytics files never hold, under an ultralytics module path
    payload = pickle.dumps(0, protocol=2).replace(b"K\x00", b"cultralytics.nn.tasks\nEvilModel\n)\x81")
    buf = io.BytesIO()
    torch.save({"x": 1}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(tmp_path / "u.pt", "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, payload if item.filename.endswith("data.pkl") else data)
    with pytest.raises(DetectorError, match="EvilModel"):
        load_detector(tmp_path / "u.pt")


def test_not_a_detector_and_missing_file(tmp_path):
    with pytest.raises(DetectorError, match="no such file"):
        load_detector(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(DetectorError, match="not a readable"):
        load_detector(tmp_path / "junk.pt")
    path = _torch_file(tmp_path / "plain.pt", {"model": {"a": torch.ones(1)}})
    with pytest.raises(DetectorError, match="no Ultralytics"):
        load_detector(path)


def test_safetensors_with_the_same_names(tmp_path, ultralytics_files):
    pt = load_detector(ultralytics_files["seg"], fuse=False)
    path = tmp_path / "seg.safetensors"
    save_file({k: v.contiguous() for k, v in pt.model.state_dict().items()}, str(path))
    st = load_detector(path, fuse=False)
    assert st.segment and st.model.config == pt.model.config
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        a, b = pt.model(x), st.model(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    bad = {k: v.contiguous() for k, v in st.model.state_dict().items() if "cv4.2" not in k}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(DetectorError, match="missing"):
        load_detector(tmp_path / "bad.safetensors")


# Ultralytics 8.4.190 with nc=1 (state-dict keys, parameters)
@pytest.mark.parametrize("scale,segment,keys,params", [
    ("n", False, 355, 3_011_043), ("s", False, 355, 11_135_987), ("m", False, 475, 25_856_899),
    ("n", True, 417, 3_263_811), ("s", True, 417, 11_790_483)])
def test_full_size_architectures_on_meta(scale, segment, keys, params):
    with torch.device("meta"):
        model = YOLOv8(YOLOConfig(scale, 1, segment))
    sd = model.state_dict()
    assert len(sd) == keys
    assert sum(p.numel() for p in model.parameters()) == params
    assert config_from_state_dict(sd) == YOLOConfig(scale, 1, segment)
    assert "model.22.dfl.conv.weight" in sd and "model.9.cv2.bn.running_var" in sd


def test_letterbox_geometry_and_anchor_count():
    geo = letterbox_geometry(768, 512)  # H, W
    assert geo == Letterbox((640, 448), (640, 427), 0, 10)
    with torch.device("meta"):
        out = YOLOv8(YOLOConfig("n", 1))(torch.empty(1, 3, 640, 448))
    assert out.shape == (1, 5, 5880)
    assert letterbox_geometry(1024, 1024) == Letterbox((640, 640), (640, 640), 0, 0)


def test_scale_boxes_inverts_the_letterbox():
    geo = letterbox_geometry(768, 512)
    boxes = torch.tensor([[10.0, 0.0, 437.0, 640.0], [110.0, 40.0, 210.0, 90.0], [-5.0, -5.0, 500.0, 700.0]])
    got = scale_boxes(boxes, geo, 768, 512)
    gx, gy = 427 / 512, 640 / 768
    assert torch.allclose(got[0], torch.tensor([0.0, 0.0, 512.0, 768.0]), atol=1e-4)
    assert torch.allclose(got[1], torch.tensor([100 / gx, 40 / gy, 200 / gx, 90 / gy]), atol=1e-4)
    assert torch.equal(got[2], torch.tensor([0.0, 0.0, 512.0, 768.0]))


def test_nms_against_brute_force():
    g = torch.Generator().manual_seed(0)
    n = 300
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 30 + 2
    scores = torch.rand(n, 2, generator=g)
    pred = torch.cat([xy, wh, scores], 1).T  # 6×A: cx, cy, w, h, two class scores
    rows = non_max_suppression(pred, 2, conf=0.3, iou=0.5, max_det=1000)
    # brute force: best class, > conf, then per class greedy by descending score
    best, cls = scores.max(1)
    cand = [i for i in range(n) if best[i] > 0.3]
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(1)

    def iou(a, b):
        lt, rb = torch.maximum(boxes[a, :2], boxes[b, :2]), torch.minimum(boxes[a, 2:], boxes[b, 2:])
        inter = (rb - lt).clamp(min=0).prod()
        return inter / (area[a] + area[b] - inter)

    kept = []
    for i in sorted(cand, key=lambda i: -best[i].item()):
        if all(cls[k] != cls[i] or iou(i, k) <= 0.5 for k in kept):
            kept.append(i)
    assert len(rows) == len(kept) > 10
    torch.testing.assert_close(rows[:, 4], best[kept])
    torch.testing.assert_close(rows[:, :4], boxes[kept])


def test_trained_file_metadata_loads(tmp_path, ultralytics_files, ultralytics_yolo):
    """Trained files also pickle numpy scalars (best fitness), paths and a namespace of train args."""
    import pathlib

    import numpy as np
    from ultralytics.utils import IterableSimpleNamespace

    ckpt = torch.load(ultralytics_files["det"], map_location="cpu", weights_only=False)
    ckpt.update(best_fitness=np.float64(0.61), epoch=-1, optimizer=None,
                train_args={"task": "detect", "save_dir": pathlib.Path("runs/detect/train")})
    ckpt["model"].args = IterableSimpleNamespace(task="detect", imgsz=640)
    torch.save(ckpt, tmp_path / "trained.pt")
    a = load_detector(tmp_path / "trained.pt", fuse=False)
    b = load_detector(ultralytics_files["det"], fuse=False)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))

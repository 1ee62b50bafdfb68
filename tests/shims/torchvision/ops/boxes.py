"""Greedy NMS and box area with torchvision.ops' semantics (boxes XYXY, highest score first)."""
import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou_with(boxes: torch.Tensor, i: int, rest: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(boxes[i, :2], boxes[rest, :2])
    rb = torch.minimum(boxes[i, 2:], boxes[rest, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area = box_area(boxes)
    return inter / (area[i] + area[rest] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the kept boxes, by decreasing score; a box goes when its IoU with a kept one is > threshold."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes.float()
    keep = []
    alive = order
    while alive.numel():
        i = int(alive[0])
        keep.append(i)
        rest = alive[1:]
        if rest.numel() == 0:
            break
        alive = rest[_iou_with(boxes, i, rest) <= iou_threshold]
    return torch.tensor(keep, dtype=torch.int64, device=scores.device)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each category of ``idxs``; result by decreasing score over all categories."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    keep = torch.cat([torch.nonzero(idxs == c).flatten()[nms(boxes[idxs == c], scores[idxs == c], iou_threshold)]
                      for c in torch.unique(idxs)])
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]

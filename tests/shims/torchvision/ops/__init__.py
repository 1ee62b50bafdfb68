from . import misc  # noqa: F401
from .boxes import batched_nms, box_area, nms  # noqa: F401

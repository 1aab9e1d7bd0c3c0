"""What the user pointed --input at: a video, a folder of images, or one image."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.images import IMAGE_EXTENSIONS, is_image_path, list_images
from pipeline.core.video import VideoInfo, probe


@dataclass
class InputSource:
    path: Path                     # absolute
    kind: str                      # 'video' or 'images'
    images: list[Path] = field(default_factory=list)
    video: VideoInfo | None = None

    @property
    def default_set(self) -> str:
        return "dst" if self.kind == "video" else "src"

    def source_name(self, image: Path | None = None) -> str:
        """How index rows name where a face came from (the folder may move; names stay)."""
        if image is None:
            return self.path.name
        return image.name


def resolve_input(path: Path) -> InputSource:
    """Classify and validate the input before anything in the workspace is touched."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise UserError(f"input {path} does not exist; check the path")
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise UserError(f"folder {path} holds no images ({' '.join(IMAGE_EXTENSIONS)}); "
                            f"point --input at a folder of photos, one image, or a video file")
        return InputSource(path, "images", images=images)
    if is_image_path(path):
        return InputSource(path, "images", images=[path])
    info = probe(path)
    if info.frames == 0:
        raise UserError(f"{path} has a video stream but no frame could be read from it; "
                        f"the file is damaged: re-export or re-download it")
    return InputSource(path, "video", video=info)

"""Teachers: one interface whether outputs are imported, generated locally, or fetched over HTTP; every call
cached (:mod:`.cache`)."""

from .base import Teacher
from .factory import build_teacher
from .hf import HFBackend, load_model
from .imported import ImportedTeacher
from .live import LiveTeacher, RationaleRecord

__all__ = ["HFBackend", "ImportedTeacher", "LiveTeacher", "RationaleRecord", "Teacher", "build_teacher", "load_model"]

"""Uploads held in memory only.

Django's default handlers spill files over 2.5 MB to a temporary file on disk; an image sent
for matching must never touch the disk, so this is the only handler. It keeps at most
IMAGE_MAX_BYTES of one file in memory and stops reading past that, marking the request so
the view answers 413 instead of silently receiving no file.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

TOO_LARGE_MARK = "consortium_upload_too_large"


class InMemoryImageUploadHandler(FileUploadHandler):
    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.buffer = io.BytesIO()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if start + len(raw_data) > settings.IMAGE_MAX_BYTES:
            self.buffer = io.BytesIO()
            if self.request is not None:
                setattr(self.request, TOO_LARGE_MARK, True)
            raise StopUpload(connection_reset=False)
        self.buffer.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> InMemoryUploadedFile:
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            file=self.buffer,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )

"""Provider archives changed member by member, as a tampering copy or a broken tool would."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

Change = Callable[[str, bytes], "tuple[str, bytes] | None"]


def retarred(data: bytes, change: Change) -> bytes:
    """The archive with each member passed through `change` (None drops it)."""
    buffer = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(data)) as source,
        tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for member in source:
            content = source.extractfile(member).read()  # type: ignore[union-attr]
            changed = change(member.name, content)
            if changed is None:
                continue
            info = tarfile.TarInfo(changed[0])
            info.size = len(changed[1])
            tar.addfile(info, io.BytesIO(changed[1]))
    return buffer.getvalue()

"""The one error type a user can cause; the CLI prints it as a single line."""


class SegbenchError(Exception):
    """A user-facing error: bad manifest, missing file, wrong hash, unknown model, no GPU."""


def located(file, model=None, field=None) -> str:
    """Prefix naming where a problem is: 'zoo/fcn.yaml: model 'x': field 'Test.mode''."""
    parts = [str(file)]
    if model is not None:
        parts.append(f"model {model!r}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts)

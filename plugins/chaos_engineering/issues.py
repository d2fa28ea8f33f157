"""Validation issues: what is wrong, in which file, at which field, against which rule."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pydantic import BaseModel, ValidationError

from chaos_engineering.chaosmesh.spec_issues import issues_from_validation_error


@dataclass(frozen=True)
class ValidationIssue:
    """One broken rule. `field` is a dotted path inside the file (`chaos.spec.duration`)."""

    file: str
    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: [{self.rule}] {self.message}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def issues_from_pydantic(file: str, model: type[BaseModel], error: ValidationError) -> list[ValidationIssue]:
    """Every error pydantic found in one of our files, with the same wording as Chaos Mesh specs."""
    return [ValidationIssue(file, i.field, i.rule, i.message) for i in issues_from_validation_error(model, error, root="")]

"""Spreadsheet rows (contract section 13): free-form columns, provenance, CSV/XLSX out, CSV in.

A file of `file_type` spreadsheet holds rows (`file_rows`): each a JSON object of column -> value
with the message it was read from (`source_message_id`). The columns of an export are the union
of the rows' keys in first-seen order. Cells a spreadsheet would run (starting with = + - @, tab
or CR) are prefixed with ' in CSV and XLSX alike, so an exported value never becomes a formula.
"""
from __future__ import annotations

import csv
import io
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.ids import new_id
from appliance.models import File, FileRow, Message
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.governance import usage
from appliance.services.identity.auth import Principal

MAX_ROWS_PER_CALL, MAX_COLUMNS, MAX_CELL = 1000, 200, 32_767  # 32,767: Excel's cell limit
MAX_ROWS = 100_000
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet(file: File) -> None:
    if file.file_type != "spreadsheet":
        raise ValidationError("rows are for spreadsheet files only", field="file_type",
                              fix="Create the file with file_type spreadsheet.")


def _row(value: Any, index: int) -> dict[str, Any]:
    where = f"rows[{index}]"
    if not isinstance(value, dict):
        raise ValidationError(f"{where}: a row is an object of column: value", field=where)
    if len(value) > MAX_COLUMNS:
        raise ValidationError(f"{where}: at most {MAX_COLUMNS} columns", field=where)
    out = {}
    for key, cell in value.items():
        if not isinstance(key, str) or not key.strip() or len(key) > 200:
            raise ValidationError(f"{where}: column names are 1-200 characters", field=where)
        if cell is not None and not isinstance(cell, (str, int, float, bool)):
            raise ValidationError(f"{where}.{key}: a cell is text, a number, true/false or null", field=f"{where}.{key}")
        if isinstance(cell, str) and len(cell) > MAX_CELL:
            raise ValidationError(f"{where}.{key}: at most {MAX_CELL} characters", field=f"{where}.{key}")
        out[key.strip()] = cell
    return out


def add_rows(db: Session, principal: Principal, file: File, rows: list[Any],
             source_message_id: str | None = None) -> list[FileRow]:
    """Append rows to a spreadsheet; source_message_id must be a message of the file's inbox."""
    _spreadsheet(file)
    if not rows or len(rows) > MAX_ROWS_PER_CALL:
        raise ValidationError(f"rows: 1 to {MAX_ROWS_PER_CALL} rows per call", field="rows")
    clean = [_row(r, i) for i, r in enumerate(rows)]
    if source_message_id is not None and tenancy.find_owned(
            db, Message, file.tenant_id, Message.id == source_message_id, Message.inbox_id == file.inbox_id) is None:
        raise ValidationError(f"source_message_id: no message {source_message_id} in this inbox",
                              field="source_message_id")
    count = db.scalar(select(func.count()).select_from(FileRow).where(FileRow.file_id == file.id)) or 0
    if count + len(clean) > MAX_ROWS:
        raise ValidationError(f"rows: a spreadsheet holds at most {MAX_ROWS} rows", field="rows")
    now = utcnow()
    out = [FileRow(id=new_id("row"), file_id=file.id, data=data, source_message_id=source_message_id,
                   created_at=now) for data in clean]
    db.add_all(out)
    file.updated_at = now
    db.flush()
    usage.record(db, file.tenant_id, usage.FILE_WRITES, inbox_id=file.inbox_id, now=now)
    events.emit(db, "file.updated", tenant_id=file.tenant_id, inbox_id=file.inbox_id, resource_id=file.id,
                actor=principal, payload={"file_id": file.id, "name": file.name, "rows_added": len(out),
                                          "source_message_id": source_message_id})
    return out


def list_rows(db: Session, file: File, *, after: str | None = None, limit: int | None = None) -> list[FileRow]:
    """A spreadsheet's rows in the order they were added."""
    _spreadsheet(file)
    query = select(FileRow).where(FileRow.file_id == file.id)
    if after:
        query = query.where(FileRow.id > after)
    query = query.order_by(FileRow.id)
    return list(db.scalars(query.limit(limit) if limit else query))


def row_to_dict(row: FileRow) -> dict:
    """The API's row object."""
    return {"row_id": row.id, "data": row.data, "source_message_id": row.source_message_id,
            "created_at": row.created_at.isoformat()}


def columns(rows: Iterable[FileRow]) -> list[str]:
    """Every column the rows use, in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row.data))


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in _FORMULA:
        return "'" + value
    return value


def export_csv(rows: list[FileRow]) -> str:
    """The rows as CSV with a header line (formula-like cells quoted with ')."""
    names = columns(rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_cell(n) for n in names])
    for row in rows:
        writer.writerow(["" if row.data.get(n) is None else _cell(row.data.get(n)) for n in names])
    return out.getvalue()


def export_xlsx(rows: list[FileRow], title: str) -> bytes:
    """The rows as an XLSX workbook (one sheet, a header row); cells are values, never formulas."""
    from openpyxl import Workbook
    names = columns(rows)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=(_sheet_title(title)))
    sheet.append([_cell(n) for n in names])
    for row in rows:
        sheet.append([_cell(row.data.get(n)) for n in names])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _sheet_title(name: str) -> str:
    cleaned = "".join("_" if c in '[]:*?/\\' else c for c in name)[:31].strip("'")
    return cleaned or "Sheet1"


def import_csv(db: Session, principal: Principal, file: File, data: bytes,
               source_message_id: str | None = None) -> dict:
    """Rows from a CSV text with a header line, appended; {imported, columns}."""
    _spreadsheet(file)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("the CSV is not UTF-8 text", fix="Export the sheet as CSV UTF-8.") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = [{k: v for k, v in r.items() if k is not None} for r in reader]
    except csv.Error as exc:
        raise ValidationError(f"the CSV cannot be read: {exc}") from None
    if "\x00" in text:
        raise ValidationError("the CSV contains NUL characters")
    if not rows:
        raise ValidationError("the CSV has no rows under its header line")
    added = []
    for start in range(0, len(rows), MAX_ROWS_PER_CALL):
        added += add_rows(db, principal, file, rows[start:start + MAX_ROWS_PER_CALL], source_message_id)
    return {"imported": len(added), "columns": columns(added)}


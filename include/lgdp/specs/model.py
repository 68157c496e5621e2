"""The return spec: one YAML file per statutory return, validated by this pydantic model.

The spec is the single source of truth. The DAG, the template workbook, the Soda contract, the
row-level checks, the JSON Schema and the docs are all derived from it, so the model is strict:
unknown keys are refused (a typo must fail when the spec loads, not months later in a council's
inbox) and every cross-reference (rules to items, keys to items, items to the shared data
dictionary) is checked by the loader in ``lgdp.specs.load``.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG = r"^[a-z][a-z0-9_]{1,39}$"
ITEM_NAME = r"^[a-z][a-z0-9_]{0,62}$"
RULE_CODE = r"^[A-Z][A-Z0-9_-]{1,30}$"
GSS_CODE = r"^S12\d{6}$"


class Strict(BaseModel):
    """Base for every spec block: extra keys are errors, so misspelt fields are caught."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Status(str, Enum):
    proposed = "proposed"
    approved = "approved"
    retired = "retired"


class Agreement(Strict):
    """Who agreed a proposal's wording and guidance (a named body and a date)."""

    body: str = Field(min_length=3, description="The body that agreed, e.g. 'CLAS working group (SG, SOLACE, 6 councils)'.")
    date: dt.date = Field(description="When it agreed.")
    items: list[str] | None = Field(
        None, description="The items whose wording and guidance it agreed ('table.item' or 'item'); omitted: every item."
    )
    note: str | None = None


class BurdenInputs(Strict):
    """The inputs of a proposal's burden estimate."""

    records_per_council: int = Field(ge=1, description="Records (rows, over all tables) a council sends each collection.")
    minutes_per_record: float = Field(gt=0, description="Minutes a council officer spends per record (extract, check, send).")


class Proposal(Strict):
    """What a proposal for a new return, or a change to one, must say before it is approved."""

    submitted_by: str = Field(min_length=3, description="Who asks for the data (body and contact).")
    submitted_on: dt.date
    regularity: str = Field(min_length=10, description="How often the data is needed, and why that often.")
    duration: str = Field(min_length=5, description="For how long the collection is needed (e.g. '2027-28 to 2031-32').")
    burden: BurdenInputs
    agreements: list[Agreement] = Field(min_length=1, description="Who agreed the wording and guidance of the items, and when.")
    dictionary_reference: str | None = Field(
        None, description="The data dictionary or standard the items follow, if any (items with 'ref' use the shared one)."
    )


class Governance(Strict):
    """Why the return exists and who answers for it (the seeds' 'governance arrangements')."""

    purpose: str = Field(min_length=10, description="What the data is used for, in plain words.")
    legal_basis: str = Field(
        min_length=3, description="Statute, regulation or mandate under which the data is collected."
    )
    requester: str = Field(min_length=2, description="The body that asks for the return.")
    owner: str = Field(min_length=2, description="Who owns the spec and answers councils' questions.")
    contact_email: str = Field(
        pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", description="Where councils send questions."
    )
    review_date: dt.date = Field(description="When the return's relevance must next be reviewed.")
    status: Status = Field(description="Only approved specs become DAGs.")
    proposal: Proposal | None = Field(None, description="Required while the return is proposed (see docs/governance.md).")


class Frequency(str, Enum):
    annual = "annual"
    quarterly = "quarterly"
    monthly = "monthly"


class Opening(Strict):
    """When a period's collection opens, relative to the end of the period it covers."""

    months_after_period_end: int = Field(
        0, ge=0, le=11, description="0 = the month straight after the period ends."
    )
    day: int = Field(1, ge=1, le=28, description="Day of that month (1-28, valid in every month).")
    time: str = Field("09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, Europe/London.")


class Collection(Strict):
    """The collection window of every period, in Europe/London."""

    frequency: Frequency
    year_starts: str = Field(
        "04-01",
        pattern=r"^(0[1-9]|1[0-2])-01$",
        description="MM-01: first month of the reporting year (CLAS: 08-01; financial: 04-01).",
    )
    opens: Opening = Field(default_factory=Opening)
    due_days_after_opening: int = Field(ge=1, description="Days from opening to the due date.")
    closes_days_after_opening: int = Field(
        ge=1, description="Days from opening to the close; late files are accepted until then."
    )
    poll_interval_minutes: int = Field(15, ge=1, le=1440, description="How often council folders are checked.")
    max_active_periods: int = Field(
        3, ge=1, le=24, description="How many periods may be open at once (overlapping collections)."
    )
    not_received: Literal["fail", "skip"] = Field(
        "fail",
        description="What a council's collect task becomes when the collection closes without an accepted submission.",
    )

    @model_validator(mode="after")
    def _due_inside_window(self) -> "Collection":
        if self.due_days_after_opening > self.closes_days_after_opening:
            raise ValueError(
                f"the due date ({self.due_days_after_opening} days after opening) falls after the "
                f"collection closes ({self.closes_days_after_opening} days after opening): "
                "the due date must be inside the collection window"
            )
        return self


class ItemType(str, Enum):
    string = "string"
    integer = "integer"
    decimal = "decimal"
    date = "date"
    boolean = "boolean"
    code = "code"


class Code(Strict):
    code: str = Field(min_length=1, max_length=40)
    label: str = Field(min_length=1)


class ItemFields(Strict):
    """Fields shared by spec items and data dictionary entries."""

    wording: str | None = Field(None, description="The question as councils see it (template header alias).")
    guidance: str | None = Field(None, description="How to answer, shown on the template's guidance sheet.")
    type: ItemType | None = None
    required: bool | None = None
    codes: list[Code] | None = Field(None, description="Allowed codes, inline.")
    code_list: str | None = Field(
        None, description="Name of a shared code list in the data dictionary, or 'councils'."
    )
    minimum: float | None = None
    maximum: float | None = None
    min_date: dt.date | None = None
    max_date: dt.date | None = None
    max_length: int | None = Field(None, ge=1)
    pattern: str | None = Field(None, description="Regular expression the whole value must match.")
    unit: str | None = None
    personal_data: bool | None = Field(None, description="True if the item identifies or describes a person.")

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ItemFields":
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum:g}) is greater than maximum ({self.maximum:g})")
        if self.min_date and self.max_date and self.min_date > self.max_date:
            raise ValueError("min_date is after max_date")
        if self.codes is not None and self.code_list is not None:
            raise ValueError("give either codes or code_list, not both")
        if self.codes is not None:
            seen: set[str] = set()
            for c in self.codes:
                if c.code in seen:
                    raise ValueError(f"code {c.code!r} is listed twice")
                seen.add(c.code)
        if self.type is not None and self.type != ItemType.code and (self.codes or self.code_list):
            raise ValueError(f"codes are only allowed on items of type code, not {self.type.value}")
        return self


class DictionaryItem(ItemFields):
    """An entry of the shared data dictionary: must be fully typed."""

    wording: str
    type: ItemType


class Item(ItemFields):
    """A data item of a return. ``ref`` borrows a shared dictionary entry; fields given here override it."""

    name: str = Field(pattern=ITEM_NAME, description="Column name: lowercase letters, digits, underscores.")
    ref: str | None = Field(None, description="Name of a shared data dictionary item this item reuses.")


class ResolvedItem(Strict):
    """An item after its dictionary reference is applied: every field the platform needs is known."""

    name: str
    ref: str | None
    wording: str
    guidance: str
    type: ItemType
    required: bool
    codes: list[Code] | None
    minimum: float | None
    maximum: float | None
    min_date: dt.date | None
    max_date: dt.date | None
    max_length: int | None
    pattern: str | None
    unit: str | None
    personal_data: bool


class Severity(str, Enum):
    error = "error"
    query = "query"


class Rule(Strict):
    """A rule: a SQL condition over one row (``expression``) or a SQL query over the whole submission
    (``query``) returning the rows it flags. See ``docs/specs.md`` (rules and query rules)."""

    code: str = Field(pattern=RULE_CODE, description="Stable code councils quote, e.g. CLAS-E012.")
    severity: Severity
    message: str = Field(min_length=5, description="What is wrong and how to fix it, for a council officer.")
    table: str | None = Field(
        None,
        pattern=ITEM_NAME,
        description="The table whose rows the rule flags (required when the spec has several tables).",
    )
    items: list[str] = Field(
        min_length=1,
        description="The data items the rule touches (traceability); 'table.item' for another table's items.",
    )
    expression: str | None = Field(
        None, min_length=1, description="SQL boolean over the row's items; true means the row passes."
    )
    query: str | None = Field(
        None,
        min_length=1,
        description=(
            "One SQL SELECT returning the flagged rows of `table` as a column _row_number (and optionally a "
            "column value shown to the council). It may read every table of the submission, previous.<table> "
            "(the council's previous accepted period), reference.<name> (shared reference tables) and the "
            "parameters :period_start, :period_end, :opens_on, :due_date, :closes_on."
        ),
    )

    @model_validator(mode="after")
    def _one_form(self) -> "Rule":
        if (self.expression is None) == (self.query is None):
            raise ValueError("a rule needs exactly one of 'expression' (a row condition) or 'query' (a SELECT)")
        return self

    @property
    def is_query(self) -> bool:
        return self.query is not None

    @property
    def sql(self) -> str:
        return self.query if self.query is not None else self.expression  # type: ignore[return-value]


class Parent(Strict):
    """Every row of this table must belong to a row of the parent table (matched on the listed items)."""

    table: str = Field(pattern=ITEM_NAME, description="The parent table.")
    items: list[str] = Field(
        min_length=1,
        description="Items of this table that identify the parent row; the parent has items of the same names.",
    )


class Table(Strict):
    """One record type of a multi-table return (one sheet, one CSV file, one XML record element)."""

    name: str = Field(pattern=ITEM_NAME, description="Table name: the sheet, CSV file and XML element councils fill in.")
    wording: str | None = Field(None, description="What one row of the table is, for councils (e.g. 'One row per child').")
    items: list[Item] = Field(min_length=1)
    keys: list[str] = Field(default_factory=list, description="Items that together identify a row of this table.")
    parent: Parent | None = Field(None, description="The table this one's rows belong to (parent-child integrity).")
    required: bool = Field(True, description="The table must have at least one row.")


class ChangeItem(Item):
    """An item added or changed by a yearly change: an existing name is changed, a new name is added."""

    table: str | None = Field(None, pattern=ITEM_NAME, description="The table of the item (multi-table specs).")


class Change(Strict):
    """The rule book's change for the periods from ``from_period`` on: the previous rule book plus
    these items and rules, minus the retired ones (Data to Insight's yearly rule sets)."""

    from_period: str = Field(pattern=r"^\d{4}(-\d{2})?(-Q[1-4])?$", description="First period the change applies to, e.g. 2026-27.")
    version: int = Field(ge=2, description="The spec version in force from that period.")
    summary: str = Field(min_length=5, description="What changed and why, for councils and requesters.")
    items: list[ChangeItem] = Field(default_factory=list, description="Items added, or changed (fields given replace the old ones).")
    rules: list[Rule] = Field(default_factory=list, description="Rules added, or replaced (same code).")
    retire_rules: list[str] = Field(default_factory=list, description="Codes of rules no longer checked.")
    retire_items: list[str] = Field(default_factory=list, description="Items no longer collected ('table.item' or 'item').")
    status: Literal["approved", "proposed"] = Field(
        "approved", description="A proposed change is reviewed and previewed but never applied to a period."
    )
    proposal: Proposal | None = Field(None, description="Required while the change is proposed (see docs/governance.md).")


class Plausibility(Strict):
    """Year-on-year checks against the council's previous accepted period (raise queries)."""

    row_count_tolerance_pct: float | None = Field(None, gt=0)
    totals: list["TotalTolerance"] = Field(default_factory=list)


class TotalTolerance(Strict):
    item: str
    tolerance_pct: float = Field(gt=0)


class Reminder(Strict):
    """One reminder: the opening notice, or a number of days from the due date (negative = before)."""

    at: Literal["opening"] | None = None
    days_from_due: int | None = Field(None, ge=-90, le=90)
    escalate: bool = Field(False, description="Also send to each council's senior contact.")

    @model_validator(mode="after")
    def _one_anchor(self) -> "Reminder":
        if (self.at is None) == (self.days_from_due is None):
            raise ValueError("a reminder needs exactly one of 'at: opening' or 'days_from_due'")
        return self

    @property
    def kind(self) -> str:
        """Stable name used in task ids (``remind_<kind>``) and the sent-reminder ledger."""
        if self.at == "opening":
            return "opening"
        d = self.days_from_due or 0
        if d == 0:
            return "due_day"
        return f"due_{'minus' if d < 0 else 'plus'}_{abs(d)}"


class LocalDestination(Strict):
    type: Literal["local"]
    path: str = Field(min_length=1, description="Folder, relative to LGDP_DELIVERY_DIR.")


class WasbDestination(Strict):
    type: Literal["wasb"]
    conn_id: str = Field(min_length=1, description="Airflow connection (wasb) holding the credentials.")
    container: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", description="Blob container name.")
    prefix: str = ""


class Suppression(Strict):
    threshold: int = Field(ge=1, description="Counts below this are suppressed.")
    items: list[str] = Field(min_length=1, description="Count items to which suppression applies.")


class Distribution(Strict):
    """What one requester receives."""

    requester: str = Field(pattern=SLUG)
    name: str
    contact_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    destination: Annotated[LocalDestination | WasbDestination, Field(discriminator="type")]
    formats: list[Literal["csv", "xlsx", "parquet", "xml"]] = Field(min_length=1)
    columns: list[str] = Field(min_length=1, description="Items the requester is entitled to receive.")
    pseudonymise: list[str] = Field(default_factory=list, description="Identifiers replaced by a keyed HMAC.")
    pseudonym_key_conn_id: str | None = Field(
        None, description="Airflow connection whose password is the requester's HMAC key."
    )
    suppression: Suppression | None = None

    @model_validator(mode="after")
    def _key_when_pseudonymising(self) -> "Distribution":
        if self.pseudonymise and not self.pseudonym_key_conn_id:
            raise ValueError("pseudonymise needs pseudonym_key_conn_id (the connection holding the key)")
        return self


class ReturnSpec(Strict):
    """One statutory data return."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        frozen=True,
        # editors see the same either/or as the model: one table (dataset, items) or several (tables)
        json_schema_extra={
            "anyOf": [
                {"required": ["dataset", "items"], "not": {"required": ["tables"]}},
                {"required": ["tables"], "not": {"anyOf": [{"required": ["dataset"]}, {"required": ["items"]}]}},
            ]
        },
    )

    id: str = Field(pattern=SLUG, description="Lowercase slug, used in the DAG id return_<id>.")
    title: str = Field(min_length=3)
    version: int = Field(ge=1, description="Bump when items or rules change.")
    governance: Governance
    collection: Collection
    providers: Literal["all"] | list[Annotated[str, Field(pattern=GSS_CODE)]] = Field(
        description="'all' for the 32 councils, or a list of GSS codes."
    )
    formats: list[Literal["xlsx", "csv", "xml"]] = Field(min_length=1)
    dataset: str | None = Field(
        None, pattern=ITEM_NAME, description="One-table return: name of the table (sheet, XML record) councils fill in."
    )
    items: list[Item] = Field(
        default_factory=list, description="One-table return: its data items.", json_schema_extra={"minItems": 1}
    )
    keys: list[str] = Field(default_factory=list, description="One-table return: items that together identify a row.")
    tables: list[Table] = Field(
        default_factory=list,
        description="Multi-table return: its tables (instead of dataset, items and keys).",
        json_schema_extra={"minItems": 1},
    )
    rules: list[Rule] = Field(default_factory=list)
    changes: list[Change] = Field(
        default_factory=list, description="Yearly rule book: changes in force from a later period on, oldest first."
    )
    plausibility: Plausibility | None = None
    reminders: list[Reminder] = Field(default_factory=list)
    distribution: list[Distribution] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_or_several_tables(self) -> "ReturnSpec":
        if self.tables:
            if self.dataset is not None or self.items or self.keys:
                raise ValueError(
                    "a spec has either dataset, items and keys (one table) or tables (several), not both"
                )
        elif self.dataset is not None and not self.items:
            raise ValueError("items must list at least 1 entry (the data items of the table)")
        elif self.dataset is None:
            raise ValueError("dataset is missing: give dataset and items (one table), or tables (several tables)")
        return self

    @property
    def multi_table(self) -> bool:
        return bool(self.tables)


class Council(Strict):
    code: str = Field(pattern=GSS_CODE)
    name: str


class Contact(Strict):
    name: str
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    role: Literal["returns", "senior"] = "returns"


class CouncilContacts(Strict):
    council: str = Field(pattern=GSS_CODE)
    contacts: list[Contact] = Field(min_length=1)


class ReferenceColumn(Strict):
    name: str = Field(pattern=ITEM_NAME)
    type: ItemType
    description: str | None = None


class ReferenceTable(Strict):
    """A reference table shipped with the specs (``return_specs/shared/reference/<name>.yaml``),
    which query rules read as ``reference.<name>`` (e.g. postcode districts to councils)."""

    name: str = Field(pattern=ITEM_NAME)
    description: str = Field(min_length=5)
    source: str = Field(min_length=3, description="Where the data comes from and when it was taken.")
    columns: list[ReferenceColumn] = Field(min_length=1)
    rows: list[list[str | int | float | bool | dt.date | None]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rows_fit(self) -> "ReferenceTable":
        n = len(self.columns)
        for i, row in enumerate(self.rows):
            if len(row) != n:
                raise ValueError(f"row {i + 1} has {len(row)} values; the table has {n} columns")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("a column name is used twice")
        return self


class Dictionary(Strict):
    """The shared data dictionary: items and code lists reused across returns."""

    code_lists: dict[str, list[Code]] = Field(default_factory=dict)
    items: dict[str, DictionaryItem] = Field(default_factory=dict)


Plausibility.model_rebuild()

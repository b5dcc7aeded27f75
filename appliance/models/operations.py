"""Operations: each long-running process's heartbeat (what `gentbox doctor` reads)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class ProcessHeartbeat(Base):
    """One row per running process (web worker, SMTP listener process, delivery worker), written
    every heartbeat_interval seconds; a row whose beat_at is old belongs to a process that died."""

    __tablename__ = "process_heartbeats"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # kind:host:pid:started
    kind: Mapped[str] = mapped_column(String(16), index=True)  # web | smtp | worker
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    beat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    version: Mapped[str] = mapped_column(String(64), default="")
    # What the process measures in memory and reports with each beat (a web process: its HTTP
    # latency histogram), so /metrics can add up every process's numbers.
    metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)

"""Render the neutral message model as plain terminal text (also what `cadence simulate` prints)."""

from __future__ import annotations

from cadences.messages import (
    Actions,
    Block,
    Button,
    Choice,
    DealList,
    Divider,
    Fields,
    Header,
    Image,
    Message,
    Paragraph,
    Table,
)


def _button(button: Button, numbered: list[Button]) -> str:
    if button.command and "..." not in button.command:
        numbered.append(button)
        return f"[{len(numbered)}] {button.label} ({button.command})"
    return f"[{button.label}]" + (f" ({button.command})" if button.command else "")


def _table(block: Table) -> list[str]:
    widths = [max(len(str(row[i])) for row in [block.columns, *block.rows]) for i in range(len(block.columns))]
    line = "  ".join(c.ljust(w) for c, w in zip(block.columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in block.rows]
    return out


def render_block(block: Block, numbered: list[Button]) -> list[str]:
    match block:
        case Header():
            return [f"== {block.text} =="]
        case Paragraph():
            return [f"  {line}" if block.muted else line for line in block.text.splitlines() or [""]]
        case Fields():
            return [f"  {item.label}: {item.value}" for item in block.items]
        case DealList():
            out = [block.title] if block.title else []
            if not block.items:
                out.append(f"  {block.empty_text}")
            for item in block.items:
                out.append(f"  • {item.name} — {item.summary}")
                out += [f"      ↳ {reason}" for reason in item.reasons]
                if item.buttons:
                    out.append("      " + "  ".join(_button(b, numbered) for b in item.buttons))
            return out
        case Table():
            return _table(block)
        case Actions():
            return ["  ".join(_button(b, numbered) for b in block.buttons)]
        case Choice():
            return [f"{block.label}: " + " | ".join(o.label for o in block.options)]
        case Image():
            return [f"[chart: {block.title or block.alt_text}]"]
        case Divider():
            return ["-" * 40]
    raise TypeError(f"unknown block {block!r}")


def render(message: Message, numbered: list[Button] | None = None, indent: str = "") -> str:
    """The message as text. Buttons with a complete command are numbered so typing the number runs it."""
    numbered = numbered if numbered is not None else []
    lines: list[str] = []
    for block in message.blocks or [Paragraph(text=message.text)]:
        lines += render_block(block, numbered)
    for reply in message.thread:
        lines.append(f"{indent}  ↳ in thread:")
        lines += ["    " + line for line in render(reply, numbered).splitlines()]
    return "\n".join(indent + line for line in lines)

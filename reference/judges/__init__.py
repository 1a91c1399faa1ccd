"""The judges: each turns (an implementation, cases) into discrepancy rows."""

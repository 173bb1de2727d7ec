"""Pure directory model: agency codes and their rules."""

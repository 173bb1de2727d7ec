"""An emulator of the national axis's REST API (domain.md §8), a development and test tool: what
the national-axis connector is tested against. Run it with `python -m services.national_emulator`.
"""

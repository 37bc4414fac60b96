"""Run views shared by Jupyter, the CLI and the dashboard: the text tree and the HTML waterfall."""

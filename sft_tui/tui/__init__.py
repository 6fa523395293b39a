"""The Textual terminal UI. It reads run directories through core and never imports torch."""

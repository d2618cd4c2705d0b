"""dify-bots core: platform-neutral Dify streaming, conversations and rendering."""

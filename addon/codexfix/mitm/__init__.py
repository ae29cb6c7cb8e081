"""The mitmproxy adapter: the addon, the stream callable and the HttpStream shim."""

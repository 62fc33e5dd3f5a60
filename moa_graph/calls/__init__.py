"""One call to a model: retries, stream watching, failures, replies checked, secrets kept out.

``call`` is the call layer every node goes through; ``progress`` times an attempt by
its tokens; ``failures`` says what a failed call means; ``replies`` checks a reply
(tool calls, echoed secrets) before it is used; ``tool_calls`` reads calls written as
JSON text; ``budget`` fits references to a context window; ``secrets`` knows the keys
and redacts them; ``http_pool`` shares connections.
"""

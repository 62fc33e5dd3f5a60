"""The aggregate-and-synthesize prompt, a config's default.

It is the one of the Mixture-of-Agents paper (Wang et al., 2024, table 1) as the
reference implementation sends it.
"""

AGGREGATE_PROMPT = (
    "You have been provided with a set of responses from various open-source models "
    "to the latest user query. Your task is to synthesize these responses into a "
    "single, high-quality response. It is crucial to critically evaluate the "
    "information provided in these responses, recognizing that some of it may be "
    "biased or incorrect. Your response should not simply replicate the given "
    "answers but should offer a refined, accurate, and comprehensive reply to the "
    "instruction. Ensure your response is well-structured, coherent, and adheres to "
    "the highest standards of accuracy and reliability.\n\n"
    "Responses from models:"
)
"""The paper's aggregate-and-synthesize prompt."""

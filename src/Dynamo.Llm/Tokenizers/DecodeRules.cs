namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// How token pieces join into text. Pieces are bytes; <see cref="AllOrNothingByteRuns"/> selects Hugging
/// Face's ByteFallback decoder (a run of &lt;0xXX&gt; tokens becomes its UTF-8 text, or one U+FFFD per byte
/// when the run is not valid UTF-8); otherwise all bytes form one UTF-8 stream with invalid sequences
/// replaced by U+FFFD, as byte-level BPE, llama.cpp and llama2.c do.
/// </summary>
internal sealed record DecodeRules(bool AllOrNothingByteRuns, LeadingSpaceRule LeadingSpace, int StripCount = 1)
{
    public static DecodeRules ByteStream { get; } = new(false, LeadingSpaceRule.None);
}

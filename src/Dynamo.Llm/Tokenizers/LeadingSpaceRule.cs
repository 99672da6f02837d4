namespace Dynamo.Llm.Tokenizers;

/// <summary>Which leading space a decode removes: the one the encoder's dummy prefix put there.</summary>
internal enum LeadingSpaceRule
{
    /// <summary>Nothing is removed (byte-level BPE).</summary>
    None = 0,

    /// <summary>Up to <see cref="DecodeRules.StripCount"/> spaces at the start of the whole output (Hugging Face's Strip decoder after Fuse).</summary>
    StripOutputStart = 1,

    /// <summary>One space at the start of the first piece that is decoded (SentencePiece, llama.cpp, Metaspace).</summary>
    StripFirstPiece = 2,

    /// <summary>One space at the start of a piece that follows BOS (llama2.c run.c).</summary>
    StripAfterBos = 3,
}

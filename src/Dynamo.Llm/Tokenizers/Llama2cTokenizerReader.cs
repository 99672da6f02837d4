using System.Text;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// Reads llama2.c's tokenizer.bin (int32 max_token_length, then per token: float32 score, int32 length,
/// bytes) and encodes/decodes as run.c does: a dummy " " prefix, one symbol per code point (or its bytes
/// as ids byte+3), best-score merges first; BOS 1, EOS 2; a space after BOS is dropped when decoding.
/// </summary>
internal static class Llama2cTokenizerReader
{
    private const int Bos = 1;
    private const int Eos = 2;
    private const int FirstByteToken = 3;

    public static BpeTokenizer Read(string path, int vocabSize)
    {
        if (!File.Exists(path))
        {
            throw new ModelFormatException(path, "tokenizer file not found");
        }

        if (vocabSize < FirstByteToken + 256)
        {
            throw new ModelFormatException(path, $"vocabulary size {vocabSize} is too small for a llama2.c tokenizer (needs at least 259)");
        }

        var pieces = new byte[]?[vocabSize];
        var strings = new string?[vocabSize];
        var scores = new float[vocabSize];
        var strict = new UTF8Encoding(false, throwOnInvalidBytes: true);
        using (var reader = new BinaryReader(File.OpenRead(path)))
        {
            try
            {
                reader.ReadInt32();
                for (int id = 0; id < vocabSize; id++)
                {
                    scores[id] = reader.ReadSingle();
                    int length = reader.ReadInt32();
                    if (length < 0 || length > reader.BaseStream.Length - reader.BaseStream.Position)
                    {
                        throw new ModelFormatException(path, $"token {id} has bad length {length}");
                    }

                    pieces[id] = reader.ReadBytes(length);
                }
            }
            catch (EndOfStreamException)
            {
                throw new ModelFormatException(path, $"truncated: fewer than {vocabSize} tokens");
            }
        }

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < vocabSize; id++)
        {
            try
            {
                strings[id] = strict.GetString(pieces[id]!);
                vocab.TryAdd(strings[id]!, id);
            }
            catch (DecoderFallbackException)
            {
                strings[id] = null;
            }

            if (strings[id] is string s && HfTokenizerJsonReader.TryParseByteToken(s, out byte b))
            {
                pieces[id] = [b];
            }
        }

        var special = new bool[vocabSize];
        special[0] = special[Bos] = special[Eos] = true;
        var model = new BpeModel(vocab, BpeMerges.FromScores(strings, scores, vocab), byteLevel: false,
            Enumerable.Range(FirstByteToken, 256).ToArray());
        return new BpeTokenizer(new BpeTokenizerParts
        {
            Model = model,
            Normalizer = TextNormalizer.Of(TextNormalizer.Prepend(" ")),
            Prefix = [Bos],
            Pieces = pieces,
            FallbackByte = new bool[vocabSize],
            Special = special,
            Rules = new DecodeRules(false, LeadingSpaceRule.StripAfterBos),
            BosTokenId = Bos,
            EosTokenIds = [Eos],
        });
    }
}

namespace Dynamo.Llm.Kv;

/// <summary>
/// Puts the parts of a KV transfer (each holding a range of the whole model's KV heads, see
/// <see cref="KvTransferLayout.Parts"/>) back into the whole payload's buffer: every row
/// ([layer][keys, then values][token]) of the whole holds the heads of every part side by side, in head order.
/// </summary>
public static class KvTransferParts
{
    /// <summary>
    /// Copies each part's heads into <paramref name="destination"/>, the whole's buffer (the first part's
    /// <see cref="KvTransferLayout.Whole"/> layout). The parts must be of one whole and cover its heads exactly once,
    /// in any order; <see cref="ArgumentException"/> otherwise.
    /// </summary>
    public static void Assemble(IReadOnlyList<KvTransferPayload> parts, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0)
        {
            throw new ArgumentException("no parts to assemble", nameof(parts));
        }

        KvTransferLayout whole = parts[0].Layout.Whole();
        if (destination.Length != whole.ByteCount)
        {
            throw new ArgumentException($"the whole takes {whole.ByteCount} bytes, the destination has {destination.Length}", nameof(destination));
        }

        var covered = new bool[whole.KvHeads];
        foreach (KvTransferPayload part in parts)
        {
            KvTransferLayout layout = part.Layout;
            if (!layout.SameWholeAs(parts[0].Layout) || layout.PartProblem() is not null || part.Data.Length != layout.ByteCount)
            {
                throw new ArgumentException($"a part ({layout.ToJson()}, {part.Data.Length} bytes) is not of the same whole as the first ({parts[0].Layout.ToJson()})", nameof(parts));
            }

            for (int h = layout.FirstKvHead; h < layout.FirstKvHead + layout.KvHeads; h++)
            {
                if (covered[h])
                {
                    throw new ArgumentException($"KV head {h} is in two parts", nameof(parts));
                }

                covered[h] = true;
            }
        }

        if (Array.IndexOf(covered, false) is int missing and >= 0)
        {
            throw new ArgumentException($"KV head {missing} is in no part", nameof(parts));
        }

        long rows = 2L * whole.Layers * whole.TokenCount;
        int headBytes = whole.HeadDim * whole.ElementBytes, wholeRow = whole.KvHeads * headBytes;
        foreach (KvTransferPayload part in parts)
        {
            ReadOnlySpan<byte> source = part.Data.Span;
            int partRow = part.Layout.KvHeads * headBytes, offset = part.Layout.FirstKvHead * headBytes;
            for (long row = 0; row < rows; row++)
            {
                source.Slice((int)(row * partRow), partRow).CopyTo(destination.Slice((int)(row * wholeRow) + offset, partRow));
            }
        }
    }
}

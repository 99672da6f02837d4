namespace Dynamo.Llm.Routing;

/// <summary>
/// Which of a prompt's blocks the <see cref="InflightLedger"/> tracks, and how many blocks each stands for. Every one of
/// the first 64; then every 4th to block 255, every 16th to block 1,023, every 64th beyond; and always the prompt's last
/// full block. A prompt of 1,024 blocks is 160 table entries instead of 1,024, one of 6,000 blocks 238 instead of 6,000.
/// <para>
/// Exact because the ledger's sets are prefix-closed: a sequence hash names its block together with the whole prefix
/// before it, and the ledger adds and drops whole prefixes, so a worker holding a tracked block holds every block before
/// it. A match therefore stops at a tracked block, and reports the blocks up to the last tracked one held: short of the
/// truth by less than one step (under 7 % of the depth past block 63, nothing before it). Each tracked block stands for
/// the blocks since the tracked block before it (its <see cref="Weight"/>, a function of its position alone, so of its
/// hash), so that distinct-block counts stay exact for prompts that end on the same blocks.
/// </para>
/// </summary>
internal static class TrackedBlocks
{
    /// <summary>The position of the tracked block after <paramref name="position"/> in a prompt of <paramref name="blocks"/> full blocks; <paramref name="blocks"/> past the last.</summary>
    public static int Next(int position, int blocks)
    {
        int step = Step(position);
        int next = position + step;
        return next < blocks - 1 ? next : position < blocks - 1 ? blocks - 1 : blocks;
    }

    /// <summary>The blocks a tracked block at <paramref name="position"/> stands for: itself and those since the tracked block before it.</summary>
    public static int Weight(int position) => position < 64 ? 1 : position - Previous(position);

    /// <summary>How many of a prompt's <paramref name="blocks"/> full blocks are tracked.</summary>
    public static int Count(int blocks)
    {
        int count = 0;
        for (int p = 0; p < blocks; p = Next(p, blocks))
        {
            count++;
        }

        return count;
    }

    /// <summary>
    /// Copies the tracked hashes of <paramref name="hashes"/> (a prompt's full-block sequence hashes) to
    /// <paramref name="tracked"/> and their positions to <paramref name="positions"/> (both at least
    /// <see cref="Count"/> long); returns how many.
    /// </summary>
    public static int Select(ReadOnlySpan<ulong> hashes, Span<ulong> tracked, Span<int> positions)
    {
        int n = 0;
        for (int p = 0; p < hashes.Length; p = Next(p, hashes.Length))
        {
            tracked[n] = hashes[p];
            positions[n++] = p;
        }

        return n;
    }

    // The gap after a tracked block at position p (the checkpoints: 0..63, 67..255 by 4, 271..1023 by 16, then by 64).
    private static int Step(int position) => position < 63 ? 1 : position < 255 ? 4 : position < 1023 ? 16 : 64;

    // The checkpoint before position p (p >= 64).
    private static int Previous(int position) => position switch
    {
        <= 255 => 63 + (4 * ((position - 64) / 4)),
        <= 1023 => 255 + (16 * ((position - 256) / 16)),
        _ => 1023 + (64 * ((position - 1024) / 64)),
    };
}

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// The merge table of a BPE model: for an adjacent pair of token ids, the id they merge into and the
/// merge's priority (lower merges first). Hugging Face merges give priority = rank; SentencePiece and
/// llama2.c give priority = -score of the merged piece. Ties go to the leftmost pair, as in all three.
/// </summary>
internal sealed class BpeMerges
{
    private readonly Dictionary<long, (float Priority, int Merged)> _pairs;

    private BpeMerges(Dictionary<long, (float Priority, int Merged)> pairs) => _pairs = pairs;

    public static BpeMerges Empty { get; } = new([]);

    /// <summary>From Hugging Face merges ("a b" or ["a", "b"]), in rank order. A merge naming an unknown piece is skipped.</summary>
    public static BpeMerges FromRankedMerges(IReadOnlyList<(string Left, string Right)> merges, IReadOnlyDictionary<string, int> vocab)
    {
        var pairs = new Dictionary<long, (float, int)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];
            if (vocab.TryGetValue(left, out int a) && vocab.TryGetValue(right, out int b) && vocab.TryGetValue(left + right, out int merged))
            {
                pairs.TryAdd(Key(a, b), (rank, merged));
            }
        }

        return new BpeMerges(pairs);
    }

    /// <summary>
    /// From scored pieces (SentencePiece BPE, llama2.c): every piece that is the concatenation of two other
    /// pieces can be made by merging them, and the highest-scoring merge goes first.
    /// </summary>
    public static BpeMerges FromScores(IReadOnlyList<string?> pieces, IReadOnlyList<float> scores, Dictionary<string, int> vocab)
    {
        var pairs = new Dictionary<long, (float, int)>();
        var lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        for (int id = 0; id < pieces.Count; id++)
        {
            string? piece = pieces[id];
            if (piece is null || piece.Length < 2 || !vocab.TryGetValue(piece, out int canonical) || canonical != id)
            {
                continue;
            }

            for (int split = 1; split < piece.Length; split++)
            {
                if (lookup.TryGetValue(piece.AsSpan(0, split), out int a) && lookup.TryGetValue(piece.AsSpan(split), out int b))
                {
                    pairs.TryAdd(Key(a, b), (-scores[id], id));
                }
            }
        }

        return new BpeMerges(pairs);
    }

    public bool TryGet(int left, int right, out float priority, out int merged)
    {
        if (_pairs.TryGetValue(Key(left, right), out var entry))
        {
            (priority, merged) = entry;
            return true;
        }

        (priority, merged) = (0, 0);
        return false;
    }

    /// <summary>
    /// Applies merges to the symbols output[start..] until none applies, best pair first, in O(n log n):
    /// a linked list of symbols and a heap of candidate pairs, stale candidates skipped when popped.
    /// </summary>
    public void MergeInPlace(List<int> output, int start)
    {
        int n = output.Count - start;
        if (n < 2 || _pairs.Count == 0)
        {
            return;
        }

        var ids = new int[n];
        var next = new int[n];
        var prev = new int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = output[start + i];
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }

        var queue = new PriorityQueue<Candidate, (float Priority, int Position)>();
        for (int i = 0; i + 1 < n; i++)
        {
            Offer(queue, ids, i, i + 1);
        }

        while (queue.TryDequeue(out var c, out _))
        {
            if (next[c.Left] != c.Right || ids[c.Left] != c.LeftId || ids[c.Right] != c.RightId)
            {
                continue;
            }

            ids[c.Left] = c.Merged;
            ids[c.Right] = -1;
            int after = next[c.Right];
            next[c.Left] = after;
            if (after >= 0)
            {
                prev[after] = c.Left;
                Offer(queue, ids, c.Left, after);
            }

            if (prev[c.Left] >= 0)
            {
                Offer(queue, ids, prev[c.Left], c.Left);
            }
        }

        output.RemoveRange(start, n);
        for (int i = 0; i >= 0; i = next[i])
        {
            output.Add(ids[i]);
        }
    }

    private void Offer(PriorityQueue<Candidate, (float, int)> queue, int[] ids, int left, int right)
    {
        if (TryGet(ids[left], ids[right], out float priority, out int merged))
        {
            queue.Enqueue(new Candidate(left, right, ids[left], ids[right], merged), (priority, left));
        }
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private readonly record struct Candidate(int Left, int Right, int LeftId, int RightId, int Merged);
}

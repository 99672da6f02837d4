using System.Collections;

namespace Dynamo.Llm.Routing;

/// <summary>
/// One worker's decisions not completed yet: a doubly linked list through the decisions themselves, so that adding
/// and removing one (every decision, every release) neither hashes nor allocates. It was a <c>HashSet</c>, 12 % of a
/// decision's time at 1,000 workers (docs/simulation.md). A decision is on at most one list. Not thread-safe: the
/// router's gate guards it.
/// </summary>
internal sealed class DecisionList : IEnumerable<RoutingDecision>
{
    private RoutingDecision? _head;

    /// <summary>Decisions on the list.</summary>
    public int Count { get; private set; }

    /// <summary>Puts <paramref name="decision"/> on the list (it must be on none).</summary>
    public void Add(RoutingDecision decision)
    {
        if (decision.Listed)
        {
            throw new InvalidOperationException("the decision is already on a worker's list");
        }

        decision.Listed = true;
        decision.PrevOnWorker = null;
        decision.NextOnWorker = _head;
        if (_head is not null)
        {
            _head.PrevOnWorker = decision;
        }

        _head = decision;
        Count++;
    }

    /// <summary>Takes <paramref name="decision"/> off the list; false when it was not on it.</summary>
    public bool Remove(RoutingDecision decision)
    {
        if (!decision.Listed)
        {
            return false;
        }

        if (decision.PrevOnWorker is { } prev)
        {
            prev.NextOnWorker = decision.NextOnWorker;
        }
        else
        {
            _head = decision.NextOnWorker;
        }

        if (decision.NextOnWorker is { } next)
        {
            next.PrevOnWorker = decision.PrevOnWorker;
        }

        decision.PrevOnWorker = null;
        decision.NextOnWorker = null;
        decision.Listed = false;
        Count--;
        return true;
    }

    /// <summary>Takes every decision off the list.</summary>
    public void Clear()
    {
        while (_head is { } d)
        {
            Remove(d);
        }
    }

    /// <inheritdoc/>
    public IEnumerator<RoutingDecision> GetEnumerator()
    {
        for (RoutingDecision? d = _head; d is not null; d = d.NextOnWorker)
        {
            yield return d;
        }
    }

    /// <inheritdoc/>
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}

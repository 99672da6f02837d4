namespace Dynamo.Benchmarks;

/// <summary>Results of calls that complete synchronously in the benchmarks (a pending one is a broken setup).</summary>
internal static class Completed
{
    public static void Check(ValueTask task, string what)
    {
        if (!task.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException($"{what} did not complete synchronously");
        }
    }

    public static T Result<T>(ValueTask<T> task, string what) =>
        task.IsCompletedSuccessfully ? task.Result : throw new InvalidOperationException($"{what} did not complete synchronously");
}

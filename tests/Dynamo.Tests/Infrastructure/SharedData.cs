namespace Dynamo.Tests.Infrastructure;

/// <summary>Locates ../shared (real models and oracles) beside the repository, or $DYNAMO_SHARED.</summary>
public static class SharedData
{
    private static readonly Lazy<string?> Root = new(Find);

    public static bool Available => Root.Value is not null;

    /// <summary>Absolute path of a file or folder under ../shared.</summary>
    public static string Path(params string[] parts)
    {
        string root = Root.Value ?? throw new InvalidOperationException("../shared not found (set DYNAMO_SHARED)");
        return System.IO.Path.Combine([root, .. parts]);
    }

    private static string? Find()
    {
        string? env = Environment.GetEnvironmentVariable("DYNAMO_SHARED");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(System.IO.Path.Combine(env, "models")))
        {
            return System.IO.Path.GetFullPath(env);
        }

        string? dir = AppContext.BaseDirectory;
        while (dir is not null)
        {
            if (File.Exists(System.IO.Path.Combine(dir, "Dynamo.slnx")))
            {
                string candidate = System.IO.Path.GetFullPath(System.IO.Path.Combine(dir, "..", "shared"));
                return Directory.Exists(System.IO.Path.Combine(candidate, "models")) ? candidate : null;
            }

            dir = System.IO.Path.GetDirectoryName(dir);
        }

        return null;
    }
}

/// <summary>The repository root (the folder holding Dynamo.slnx).</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null)
        {
            if (File.Exists(System.IO.Path.Combine(dir, "Dynamo.slnx")))
            {
                return dir;
            }

            dir = System.IO.Path.GetDirectoryName(dir);
        }

        throw new InvalidOperationException("repository root not found");
    }
}

/// <summary>A fact that needs ../shared: reported as NOT RUN (by name, by test.sh) where it is absent.</summary>
public sealed class SharedFactAttribute : FactAttribute
{
    public SharedFactAttribute()
    {
        if (!SharedData.Available)
        {
            Skip = "NOT RUN: needs ../shared (real models and oracles), which is absent";
        }
    }
}

/// <summary>A theory that needs ../shared: reported as NOT RUN where it is absent.</summary>
public sealed class SharedTheoryAttribute : TheoryAttribute
{
    public SharedTheoryAttribute()
    {
        if (!SharedData.Available)
        {
            Skip = "NOT RUN: needs ../shared (real models and oracles), which is absent";
        }
    }
}

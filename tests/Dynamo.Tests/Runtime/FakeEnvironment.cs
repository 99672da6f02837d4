namespace Dynamo.Tests.Runtime;

/// <summary>Environment variables for a test, as the function the options records read them through.</summary>
internal static class FakeEnvironment
{
    /// <summary>The variables given; every other one unset.</summary>
    public static Func<string, string?> Env(params (string Name, string? Value)[] variables) =>
        name => variables.FirstOrDefault(v => v.Name == name).Value;
}

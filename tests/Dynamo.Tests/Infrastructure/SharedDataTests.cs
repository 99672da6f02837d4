namespace Dynamo.Tests.Infrastructure;

public class SharedDataTests
{
    [SharedFact]
    public void Path_SharedModels_Exist()
    {
        Assert.True(File.Exists(SharedData.Path("models", "stories260K", "stories260K.bin")));
    }
}

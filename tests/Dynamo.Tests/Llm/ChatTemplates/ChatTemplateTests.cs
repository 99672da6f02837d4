using System.Text.Json;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Llm.ChatTemplates;

public class ChatTemplateTests
{
    public static TheoryData<string, string, string, string> ReferenceCases => JinjaReferenceCases.All;

    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void Render_ReferenceCase_MatchesPythonJinja2(string name, string template, string contextJson, string expected)
    {
        var context = (Dictionary<string, object?>)ChatTemplateValue.FromJson(JsonDocument.Parse(contextJson).RootElement)!;

        string actual = ChatTemplate.Parse(template).Render(context);

        Assert.True(expected == actual, $"{name}:\nexpected: {expected}\nactual:   {actual}");
    }

    [Fact]
    public void RenderChat_ChatMlMultiTurn_SetsMessagesAndGenerationPrompt()
    {
        ChatTemplate t = ChatTemplate.Parse(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}");

        string s = t.RenderChat([new("system", "Be brief."), new("user", "Hi")], addGenerationPrompt: true, bosToken: null, eosToken: "</s>");

        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", s);
    }

    [Fact]
    public void RenderChat_ToolsAbsent_AreNoneAndExtraOverrides()
    {
        ChatTemplate t = ChatTemplate.Parse("{{ tools }}|{{ documents is none }}|{{ enable_thinking }}|{{ bos_token }}{{ eos_token }}");

        string s = t.RenderChat([], false, "<s>", "</s>", new Dictionary<string, object?> { ["enable_thinking"] = false });

        Assert.Equal("None|True|False|<s></s>", s);
    }

    [SharedFact]
    public void RenderChat_RealQwen3TemplateThinkingDisabled_AppendsEmptyThinkBlock()
    {
        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(SharedData.Path("models", "tokenizers", "qwen3", "tokenizer_config.json")));
        ChatTemplate t = ChatTemplate.Parse(config.RootElement.GetProperty("chat_template").GetString()!);

        string s = t.RenderChat(
            [new("system", "You are helpful."), new("user", "Hi!")],
            addGenerationPrompt: true,
            bosToken: null,
            eosToken: "<|im_end|>",
            new Dictionary<string, object?> { ["enable_thinking"] = false });

        Assert.Equal("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", s);
    }

    [Fact]
    public void Render_RaiseException_ThrowsRaisedExceptionWithPythonMessage()
    {
        ChatTemplate t = ChatTemplate.Parse("ok{{ raise_exception('Roles must alternate') }}");

        ChatTemplateRaisedException e = Assert.Throws<ChatTemplateRaisedException>(() => t.Render(new Dictionary<string, object?>()));

        Assert.Equal("TemplateError: Roles must alternate", e.Message);
        Assert.Equal("Roles must alternate", e.TemplateMessage);
    }

    [Theory]
    [InlineData("a\n{{ x | shout }}", "unknown or unsupported filter 'shout' (line 2)")]
    [InlineData("{% if x is shouty %}{% endif %}", "unknown or unsupported test 'shouty' (line 1)")]
    [InlineData("\n\n{% include 'other.j2' %}", "unknown or unsupported tag 'include' (line 3)")]
    [InlineData("{% for x in y %}", "unexpected end of template, expected 'else' or 'endfor'")]
    [InlineData("{{ 'unterminated }}", "unterminated string literal (line 1)")]
    [InlineData("{{ x + }}", "unexpected '}}' (line 1)")]
    [InlineData("{% endif %}", "unknown or unsupported tag 'endif' (line 1)")]
    public void Parse_UnsupportedOrInvalid_ThrowsOneLineMessageNamingConstruct(string template, string expectedPart)
    {
        ChatTemplateException e = Assert.ThrowsAny<ChatTemplateException>(() => ChatTemplate.Parse(template));

        Assert.Contains(expectedPart, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("{{ foo.bar }}", "'foo' is undefined (line 1)")]
    [InlineData("\n{{ 'a' + missing }}", "'missing' is undefined (line 2)")]
    [InlineData("{{ 'a' + 1 }}", "unsupported operand type(s) for +: 'str' and 'int' (line 1)")]
    [InlineData("{{ 'abc'.nomethod() }}", "'str object' has no attribute 'nomethod' (line 1)")]
    [InlineData("{{ missing|tojson }}", "'missing' is undefined (line 1)")]
    [InlineData("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "template nesting deeper than 200 (recursive macro?) (line 1)")]
    public void Render_PythonRuntimeError_ThrowsWithPythonWordingAndLine(string template, string expected)
    {
        ChatTemplate t = ChatTemplate.Parse(template);

        ChatTemplateException e = Assert.ThrowsAny<ChatTemplateException>(() => t.Render(new Dictionary<string, object?>()));

        Assert.Equal(expected, e.Message);
    }

    [Fact]
    public void Render_DotNetValues_AreNormalizedToPythonTypes()
    {
        ChatTemplate t = ChatTemplate.Parse("{{ i }} {{ i is integer }} {{ f }} {{ f is float }} {{ l }} {{ d|tojson }} {{ m.role }}");
        var context = new Dictionary<string, object?>
        {
            ["i"] = 3,
            ["f"] = 2.0f,
            ["l"] = new[] { "a", "b" },
            ["d"] = new Dictionary<string, object?> { ["z"] = 1, ["a"] = null },
            ["m"] = new ChatMessage("user", "hi"),
        };

        Assert.Equal("3 True 2.0 True ['a', 'b'] {\"z\": 1, \"a\": null} user", t.Render(context));
    }

    [Fact]
    public void FromJson_FloatWithZeroFraction_StaysFloat()
    {
        using JsonDocument doc = JsonDocument.Parse("{\"a\": 1.0, \"b\": 1, \"c\": 1e3, \"d\": [true, null, \"x\"]}");

        var value = (IReadOnlyDictionary<string, object?>)ChatTemplateValue.FromJson(doc.RootElement)!;

        Assert.Equal(1.0, value["a"]);
        Assert.Equal(1L, value["b"]);
        Assert.Equal(1000.0, value["c"]);
        Assert.Equal(new object?[] { true, null, "x" }, (IReadOnlyList<object?>)value["d"]!);
        Assert.Equal("{\"a\": 1.0, \"b\": 1, \"c\": 1000.0, \"d\": [true, null, \"x\"]}",
            ChatTemplate.Parse("{{ v|tojson }}").Render(new Dictionary<string, object?> { ["v"] = doc.RootElement }));
    }

    [Fact]
    public void Render_StrftimeNow_UsesInjectedClock()
    {
        var clock = new FixedClock(new DateTimeOffset(2024, 7, 6, 15, 4, 5, TimeSpan.Zero));

        string s = ChatTemplate.Parse("{{ strftime_now('%d %b %Y %H:%M:%S %A %B %-d %%') }}").Render(new Dictionary<string, object?>(), clock);

        Assert.Equal("06 Jul 2024 15:04:05 Saturday July 6 %", s);
    }

    [Fact]
    public void Render_SameTemplateTwice_HoldsNoStateBetweenRenders()
    {
        ChatTemplate t = ChatTemplate.Parse("{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}");
        var context = new Dictionary<string, object?> { ["xs"] = new List<object?> { 1L, 2L } };

        Assert.Equal("3", t.Render(context));
        Assert.Equal("3", t.Render(context));
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;

        public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
    }
}

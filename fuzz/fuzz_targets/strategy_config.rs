//! `cargo fuzz run strategy_config`: any text as a strategy configuration (first line the
//! strategy's name, the rest its JSON) is accepted or refused with a ConfigError, never a panic;
//! an accepted one validates and survives a JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponder::StrategyConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, json) = text.split_once('\n').unwrap_or(("mcts", text));
    if let Ok(config) = StrategyConfig::from_json(name, json) {
        let _ = config.validate();
        let again = serde_json::to_string(&config).expect("a config serialises");
        let back: StrategyConfig = serde_json::from_str(&again).expect("and parses back");
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&config).unwrap()
        );
    }
});

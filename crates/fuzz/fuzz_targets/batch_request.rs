//! BatchDecide's parser and encoder on arbitrary bytes: never a panic; whatever parses is
//! decided as asked (each id in normal form), and the answer (of any shape) decodes to one
//! decision per question.

#![no_main]

#[path = "../../engine/tests/common/mod.rs"]
mod common;

use std::sync::OnceLock;

use domicile_engine::dataset_ids::lookup_form;
use domicile_engine::wire::proto;
use domicile_engine::{Change, Engine, Operation};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let engine = Engine::new(common::policy("1", "inherit", "null"));
        engine.apply(&[
            Change::Described {
                id: "s3://eu/a".into(),
                labels: vec!["PII".into()],
                origins: vec!["DE".into()],
                locations: vec![],
            },
            Change::EdgeAdded {
                input: "s3://eu/a".into(),
                output: "s3://lake/b".into(),
                job: "j".into(),
                transform: "".into(),
                recorded: None,
            },
        ]);
        engine
    })
}

fuzz_target!(|data: &[u8]| {
    let state = engine().read();
    let Ok(batch) = state.batch_decide(data, 100, common::NOW, None) else { return };
    // The questions as asked, each id in normal form.
    let request = proto::BatchDecideRequest::decode(data).expect("the request decodes");
    assert_eq!(request.requests.len(), batch.questions.len());
    for (sent, question) in request.requests.iter().zip(batch.questions.iter()) {
        assert_eq!(lookup_form(&sent.dataset_id), question.dataset_id);
        let operation = match question.operation {
            Operation::Store => proto::Operation::Store,
            Operation::Process => proto::Operation::Process,
        };
        assert_eq!(sent.operation, operation as i32);
        assert_eq!(&**state.policy.region_name(question.region), sent.region);
    }
    let (answer, _) = state.encode_batch(&batch, 7, common::NOW, "fuzz", 1);
    let decoded = proto::BatchDecideResponse::decode(&answer[..]).expect("the answer decodes");
    assert_eq!(decoded.decisions.len(), batch.questions.len());
    for (decision, question) in decoded.decisions.iter().zip(batch.questions.iter()) {
        assert_eq!(decision.dataset_id, question.dataset_id);
        // A compact answer's decisions name a region set it holds, their reasons texts it holds.
        assert!(decoded.region_sets.is_empty() || (decision.allowed_regions_set as usize) < decoded.region_sets.len());
        for reason in &decision.reasons {
            assert!(decoded.reason_texts.is_empty() || (reason.text as usize) < decoded.reason_texts.len());
        }
    }
});
